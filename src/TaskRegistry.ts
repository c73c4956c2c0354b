/**
 * The registry of task modules behind the generic task `kc.exec`: the producer finds a plain exported
 * async function's module and qualified name in it (by function identity); the worker imports only the
 * modules it allows (below its app dir, or named explicitly) and resolves the name again.
 */
import { existsSync, realpathSync, statSync } from "node:fs"
import { isBuiltin } from "node:module"
import { isAbsolute, relative, resolve, sep } from "node:path"
import { pathToFileURL } from "node:url"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import { findFiles } from "./internal/glob.js"
import * as Task from "./Task.js"

/** The name of the generic executor task on the wire. */
export const execTaskName = "kc.exec"

/** The default `--tasks-pattern`. */
export const defaultTasksPattern: ReadonlyArray<string> = ["**/tasks.{ts,js}"]

/** Where the task modules are. */
export interface TaskRegistryOptions {
  /** The folder module names are relative to (default: the current folder). */
  readonly appDir?: string | undefined
  /** Task modules named explicitly (paths relative to `appDir`); always allowed, even outside it. */
  readonly modules?: ReadonlyArray<string> | undefined
  /** Import every file below `appDir` matching `tasksPattern` (node_modules and dot folders skipped). */
  readonly fsDiscover?: boolean | undefined
  /** Globs for `fsDiscover` (default `**\/tasks.{ts,js}`). */
  readonly tasksPattern?: ReadonlyArray<string> | undefined
}

/** Where a function lives, as the message names it. */
export interface Located {
  readonly module: string
  readonly qualname: string
}

/** The registry service. */
export class TaskRegistry extends Context.Tag("effect-taskiq/TaskRegistry")<TaskRegistry, {
  readonly appDir: string
  /** The loaded modules' names (relative to `appDir`, POSIX separators). */
  readonly modules: ReadonlyArray<string>
  /** The declared tasks the loaded modules export. */
  readonly tasks: ReadonlyArray<Task.Any>
  /** Producer side: where a function is exported, or why it cannot be sent. */
  readonly locate: (fn: unknown) => Either.Either<Located, Task.InvalidTask>
  /** Worker side: the function a `kc.exec` message names, if the module is allowed. */
  readonly resolve: (module: string, qualname: string) => Effect.Effect<(...args: ReadonlyArray<unknown>) => unknown, Task.InvalidTask>
}>() {}

const forbiddenNames = new Set(["__proto__", "prototype", "constructor", "caller", "arguments", "then"])
const moduleExtensions = /\.(?:[cm]?[jt]s)$/

const isAsyncFunction = (fn: unknown): fn is (...args: ReadonlyArray<unknown>) => Promise<unknown> =>
  typeof fn === "function" && fn.constructor?.name === "AsyncFunction"

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && (Object.getPrototypeOf(u) === Object.prototype || Object.getPrototypeOf(u) === null)

const invalid = (reason: Task.InvalidTask["reason"], taskName: string, detail: string) =>
  new Task.InvalidTask({ reason, taskName, detail })

/** A module name as the wire carries it: relative to the app dir, POSIX separators. */
const moduleId = (appDir: string, file: string) => relative(appDir, file).split(sep).join("/")

/** Loads the task modules and indexes their exports. */
export const make = (options: TaskRegistryOptions = {}): Effect.Effect<Context.Tag.Service<TaskRegistry>, Task.InvalidTask> =>
  Effect.gen(function*() {
    const appDir = realpathSync(resolve(options.appDir ?? process.cwd()))
    const explicit = new Map<string, string>() // module id → real file
    for (const m of options.modules ?? []) {
      const file = resolve(appDir, m)
      if (!existsSync(file) || !statSync(file).isFile()) {
        return yield* invalid("UnknownModule", m, `task module ${m} not found (looked for ${file})`)
      }
      explicit.set(moduleId(appDir, file), realpathSync(file))
    }
    const discovered = options.fsDiscover ? findFiles(appDir, options.tasksPattern ?? defaultTasksPattern) : []
    for (const rel of discovered) if (!explicit.has(rel)) explicit.set(rel, realpathSync(resolve(appDir, rel)))

    const loaded = new Map<string, Record<string, unknown>>()
    const locations = new WeakMap<object, Located>()
    const tasks: Array<Task.Any> = []
    const index = (id: string, namespace: Record<string, unknown>) => {
      const visit = (value: unknown, path: string, depth: number) => {
        if (Task.isTask(value)) {
          if (!tasks.includes(value)) tasks.push(value)
        } else if (typeof value === "function") {
          if (!locations.has(value)) locations.set(value, { module: id, qualname: path })
        } else if (depth < 4 && isPlainObject(value)) {
          for (const key of Object.keys(value)) {
            if (!forbiddenNames.has(key)) visit(value[key], `${path}.${key}`, depth + 1)
          }
        }
      }
      for (const key of Object.keys(namespace)) visit(namespace[key], key, 0)
    }
    const importFile = (id: string, file: string) =>
      Effect.tryPromise({
        try: () => import(pathToFileURL(file).href) as Promise<Record<string, unknown>>,
        catch: (cause) => invalid("UnknownModule", id, `importing ${id} failed: ${String((cause as Error)?.stack ?? cause)}`)
      }).pipe(Effect.tap((namespace) => Effect.sync(() => {
        loaded.set(id, namespace)
        index(id, namespace)
      })))
    for (const [id, file] of explicit) yield* importFile(id, file)

    // A module a message names may be imported later, but only from inside the app dir.
    const allowedFile = (module: string): Either.Either<string, Task.InvalidTask> => {
      const refuse = (detail: string) => Either.left(invalid("ForbiddenModule", module, detail))
      if (module.length === 0 || module.includes("\0") || module.includes("\\")) return refuse("not a module path")
      if (module.startsWith("node:") || isBuiltin(module)) return refuse("Node built-in modules are never run by kc.exec")
      if (isAbsolute(module) || /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(module)) {
        return refuse("absolute paths and URLs are refused: name modules relative to the worker's app dir")
      }
      const segments = module.split("/")
      if (segments.includes("..")) return refuse("'..' would leave the worker's app dir")
      if (segments.includes("node_modules") || segments.some((s) => s.startsWith("."))) {
        return refuse("modules in node_modules or dot folders are not task modules")
      }
      if (!moduleExtensions.test(module)) return refuse("a task module is a .ts or .js file path relative to the app dir")
      let file = resolve(appDir, module)
      if (!existsSync(file)) {
        // A producer running compiled code names tasks.js where the worker has tasks.ts, or the other way round.
        const twin = file.replace(/\.([cm]?)([jt])s$/, (_m, p: string, l: string) => `.${p}${l === "j" ? "t" : "j"}s`)
        if (!existsSync(twin)) return Either.left(invalid("UnknownModule", module, `no module ${module} below ${appDir}`))
        file = twin
      }
      const real = realpathSync(file)
      if (!real.startsWith(appDir + sep)) return refuse("the module resolves (through a symlink) outside the app dir")
      return Either.right(real)
    }

    const resolveFn = (module: string, qualname: string) =>
      Effect.gen(function*() {
        let namespace = loaded.get(module)
        if (namespace === undefined) {
          const file = explicit.get(module) ?? (yield* allowedFile(module))
          namespace = yield* importFile(module, file)
        }
        const parts = qualname.split(".")
        let value: unknown = namespace
        for (const part of parts) {
          if (forbiddenNames.has(part) || part === "" || typeof value !== "object" && typeof value !== "function" || value === null) {
            return yield* invalid("NotExported", `${module}:${qualname}`, `"${qualname}" is not an export of ${module}`)
          }
          if (!Object.prototype.hasOwnProperty.call(value, part)) {
            return yield* invalid("NotExported", `${module}:${qualname}`, `"${qualname}" is not an export of ${module}`)
          }
          value = (value as Record<string, unknown>)[part]
        }
        if (!isAsyncFunction(value)) {
          return yield* invalid("NotAsync", `${module}:${qualname}`, `${module}:${qualname} is not an async function`)
        }
        return value
      })

    const locate = (fn: unknown): Either.Either<Located, Task.InvalidTask> => {
      if (typeof fn !== "function") {
        return Either.left(invalid("NotATask", String(fn), "pass a declared task (Task.make) or an exported async function"))
      }
      const name = fn.name || "<anonymous>"
      if (!isAsyncFunction(fn)) {
        return Either.left(invalid(
          "NotAsync",
          name,
          `${name} is not an async function: declare it \`export async function ${fn.name || "name"}(…)\` (kc.exec runs async functions only)`
        ))
      }
      const where = locations.get(fn)
      if (where !== undefined) return Either.right(where)
      return Either.left(invalid(
        "NotExported",
        name,
        fn.name === "" || fn.name === "anonymous"
          ? "a lambda or local function cannot be found by a worker: export a named async function from a task module"
          : `${name} is not an export of a registered task module (${[...loaded.keys()].join(", ") || "none registered"}): ` +
            "export it from a task module and register that module (modules: [...] or fsDiscover)"
      ))
    }

    return TaskRegistry.of({ appDir, modules: [...loaded.keys()], tasks, locate, resolve: resolveFn })
  })

/** The registry as a layer. */
export const layer = (options: TaskRegistryOptions = {}): Layer.Layer<TaskRegistry, Task.InvalidTask> =>
  Layer.effect(TaskRegistry, make(options))

/** The generic executor task: runs `module:qualname` with `args` (and `kwargs` as a last argument). */
export const execTask = (registry: Context.Tag.Service<TaskRegistry>) =>
  Task.make(execTaskName, (module: string, qualname: string, args: ReadonlyArray<unknown> = [], kwargs: Record<string, unknown> = {}) =>
    typeof module !== "string" || typeof qualname !== "string" || !Array.isArray(args) || !isPlainObject(kwargs)
      ? Effect.fail(invalid("InvalidArguments", execTaskName, "kc.exec takes [module, qualname, args[], kwargs{}]"))
      : Effect.flatMap(registry.resolve(module, qualname), (fn) =>
      Effect.tryPromise({
        try: () => Object.keys(kwargs).length === 0 ? fn(...args) as Promise<unknown> : fn(...args, kwargs) as Promise<unknown>,
        catch: (e) => e
      })))
