import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Broker } from "../src/Broker.js"
import * as Executor from "../src/Executor.js"
import { scheduleAsync, scheduleMany, scheduleWith } from "../src/Producer.js"
import type { TaskHandle } from "../src/TaskHandle.js"
import { ResultBackend } from "../src/ResultBackend.js"
import * as TaskMessage from "../src/TaskMessage.js"
import * as TaskRegistry from "../src/TaskRegistry.js"
import * as Taskiq from "../src/Taskiq.js"
import * as Worker from "../src/Worker.js"
import * as app from "./fixtures/app/tasks.js"
import { findFiles, globToRegExp } from "../src/internal/glob.js"

const appDir = resolve("test/fixtures/app")
// Made at run time: git would not keep a node_modules folder, and a symlink out of the app dir is the point.
const evilDir = join(appDir, "node_modules", "evil")
const outside = mkdtempSync(join(tmpdir(), "taskiq-outside-"))
const marker = join(outside, "side-effect-happened")

beforeAll(() => {
  mkdirSync(evilDir, { recursive: true })
  writeFileSync(join(evilDir, "tasks.ts"), "export async function evil() { return 'from node_modules' }\n")
  writeFileSync(join(outside, "escape.ts"), "export async function escape() { return 'outside' }\n")
  symlinkSync(join(outside, "escape.ts"), join(appDir, "other", "link.ts"))
})
afterAll(() => {
  rmSync(join(appDir, "node_modules"), { recursive: true, force: true })
  rmSync(join(appDir, "other", "link.ts"), { force: true })
  rmSync(outside, { recursive: true, force: true })
})

const registry = (options: TaskRegistry.TaskRegistryOptions = { fsDiscover: true }) =>
  TaskRegistry.make({ appDir, ...options })

describe("glob", () => {
  it("matches task-module patterns", () => {
    const re = globToRegExp("**/tasks.{ts,js}")
    assert.isTrue(re.test("tasks.ts"))
    assert.isTrue(re.test("a/b/tasks.js"))
    assert.isFalse(re.test("a/b/tasks.tsx"))
    assert.isFalse(re.test("mytasks.ts"))
    assert.isTrue(globToRegExp("jobs/*.ts").test("jobs/x.ts"))
    assert.isFalse(globToRegExp("jobs/*.ts").test("jobs/deep/x.ts"))
  })

  it("skips node_modules and dot folders", () => {
    assert.deepStrictEqual(findFiles(appDir, ["**/tasks.{ts,js}"]), ["nested/deep/tasks.ts", "tasks.ts"])
  })
})

describe("TaskRegistry", () => {
  it.effect("--fs-discover finds task modules in nested folders, never in node_modules or dot folders", () =>
    Effect.gen(function*() {
      const r = yield* registry()
      assert.deepStrictEqual([...r.modules].sort(), ["nested/deep/tasks.ts", "tasks.ts"])
      assert.deepStrictEqual(r.tasks.map((t) => t.name), ["app.declared", "app.steps"])
    }))

  it.effect("locates exported async functions by identity, nested objects as dotted names", () =>
    Effect.gen(function*() {
      const r = yield* registry()
      assert.deepStrictEqual(Either.getOrThrow(r.locate(app.add)), { module: "tasks.ts", qualname: "add" })
      assert.deepStrictEqual(Either.getOrThrow(r.locate(app.math.mul)), { module: "tasks.ts", qualname: "math.mul" })
      assert.deepStrictEqual(Either.getOrThrow(r.locate(app.math.deeper.neg)), { module: "tasks.ts", qualname: "math.deeper.neg" })
    }))

  it.effect("refuses lambdas, local and non-async functions with an error that says what to do", () =>
    Effect.gen(function*() {
      const r = yield* registry()
      const notAsync = Either.flip(r.locate(app.notAsync)).pipe(Either.getOrThrow)
      assert.strictEqual(notAsync.reason, "NotAsync")
      assert.include(notAsync.message, "export async function notAsync")
      const lambda = Either.flip(r.locate(async (a: number) => a)).pipe(Either.getOrThrow)
      assert.strictEqual(lambda.reason, "NotExported")
      assert.include(lambda.message, "lambda")
      async function local() {}
      const localError = Either.flip(r.locate(local)).pipe(Either.getOrThrow)
      assert.strictEqual(localError.reason, "NotExported")
      assert.include(localError.message, "register that module")
      assert.strictEqual(Either.flip(r.locate(42)).pipe(Either.getOrThrow).reason, "NotATask")
    }))

  it.effect("without registration nothing is located: a module must be given or discovered", () =>
    Effect.gen(function*() {
      const r = yield* registry({ fsDiscover: false })
      assert.deepStrictEqual(r.modules, [])
      assert.strictEqual(Either.flip(r.locate(app.add)).pipe(Either.getOrThrow).reason, "NotExported")
      const named = yield* registry({ modules: ["tasks.ts"] })
      assert.isTrue(Either.isRight(named.locate(app.add)))
    }))

  it.effect("a missing module named explicitly is an UnknownModule error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(registry({ modules: ["nope/tasks.ts"] }))
      assert.strictEqual(error.reason, "UnknownModule")
    }))

  it.effect("resolves allowed modules below the app dir, importing them on demand", () =>
    Effect.gen(function*() {
      const r = yield* registry()
      const later = yield* r.resolve("other/more.ts", "later")
      assert.strictEqual(yield* Effect.promise(() => later() as Promise<string>), "imported on demand")
      // A producer running compiled code names the .js twin of the worker's .ts module.
      const twin = yield* r.resolve("other/more.js", "later")
      assert.strictEqual(twin, later)
    }))

  const refused: ReadonlyArray<[string, string, string]> = [
    ["node:child_process", "execSync", "ForbiddenModule"],
    ["child_process", "execSync", "ForbiddenModule"],
    ["fs", "rmSync", "ForbiddenModule"],
    ["/etc/passwd.js", "x", "ForbiddenModule"],
    [`${appDir}/tasks.ts`, "add", "ForbiddenModule"],
    ["file:///etc/passwd.js", "x", "ForbiddenModule"],
    ["../Worker.test.ts", "x", "ForbiddenModule"],
    ["nested/../../utils/redis.ts", "deleteKeys", "ForbiddenModule"],
    ["node_modules/evil/tasks.ts", "evil", "ForbiddenModule"],
    [".hidden/tasks.ts", "hidden", "ForbiddenModule"],
    ["other/link.ts", "escape", "ForbiddenModule"],
    ["ioredis", "default", "ForbiddenModule"],
    ["tasks.ts", "__proto__", "NotExported"],
    ["tasks.ts", "add.constructor", "NotExported"],
    ["tasks.ts", "constructor.constructor", "NotExported"],
    ["tasks.ts", "math.__proto__.toString", "NotExported"],
    ["tasks.ts", "notAsync", "NotAsync"],
    ["tasks.ts", "missing", "NotExported"],
    ["no/such/module.ts", "x", "UnknownModule"]
  ]
  for (const [module, qualname, reason] of refused) {
    it.effect(`refuses ${module}:${qualname} (${reason})`, () =>
      Effect.gen(function*() {
        const r = yield* registry()
        const error = yield* Effect.flip(r.resolve(module, qualname))
        assert.strictEqual(error._tag, "InvalidTask")
        assert.strictEqual(error.reason, reason)
      }))
  }
})

describe("kc.exec end to end (in memory)", () => {
  const layer = Worker.layer({ maxAsyncTasks: 4, blockMs: 50 }).pipe(
    Layer.provide(Executor.layerRegistry()),
    Layer.provideMerge(Layer.merge(Taskiq.layerMemory(), TaskRegistry.layer({ appDir, fsDiscover: true })))
  )

  it.scopedLive("scheduleAsync(fn, ...args) runs an exported async function on the worker", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(layer)
      const run = <A, E>(e: Effect.Effect<A, E, Broker | ResultBackend | TaskRegistry.TaskRegistry>) => Effect.provide(e, ctx)
      assert.strictEqual(yield* run(Effect.flatMap(scheduleAsync(app.add, 1, 2), (h) => h.result())), 3)
      assert.strictEqual(yield* run(Effect.flatMap(scheduleAsync(app.math.mul, 6, 7), (h) => h.result())), 42)
      const deep = yield* Effect.promise(() => import("./fixtures/app/nested/deep/tasks.js"))
      assert.strictEqual(yield* run(Effect.flatMap(scheduleAsync(deep.deepTask, "x"), (h) => h.result())), "X")
      const greeted = yield* run(Effect.flatMap(scheduleWith(app.greet, { kwargs: { punctuation: "!" } }, "ada"), (h) => h.result()))
      assert.strictEqual(greeted, "hello ada!")
      const failed = yield* run(Effect.flatMap(scheduleAsync(app.explode), (h) => h.waitResult()))
      assert.isTrue(failed.isErr)
      assert.strictEqual(failed.error?.excType, "TypeError")
      // Declared tasks from the discovered modules are registered too.
      assert.strictEqual(yield* run(Effect.flatMap(app.declared.kiq(4), (h) => h.result())), 40)
      const refused = yield* run(Effect.flip(scheduleAsync(app.notAsync as never)))
      assert.strictEqual(refused._tag, "InvalidTask")
    }))

  it.scopedLive("scheduleMany(fn, argsList) submits many kc.exec runs at once; a declared task too; a lambda is refused", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(layer)
      const run = <A, E>(e: Effect.Effect<A, E, Broker | ResultBackend | TaskRegistry.TaskRegistry>) => Effect.provide(e, ctx)
      const results = <A, E>(handles: ReadonlyArray<TaskHandle<A, E>>) =>
        run(Effect.forEach(handles, (h) => h.result({ timeout: "10 seconds" })))
      const sums = yield* run(scheduleMany(app.add, [[1, 2], [3, 4], [5, 6]]))
      assert.deepStrictEqual(sums.map((h) => h.taskName), ["kc.exec", "kc.exec", "kc.exec"])
      assert.deepStrictEqual(yield* results(sums), [3, 7, 11])
      const greeted = yield* run(scheduleMany(app.greet, [["ada"]], { kwargs: { punctuation: "!" } }))
      assert.deepStrictEqual(yield* results(greeted), ["hello ada!"])
      assert.deepStrictEqual(yield* results(yield* run(scheduleMany(app.declared, [[1], [2]]))), [10, 20])
      const refused = yield* run(Effect.flip(scheduleMany(async (n: number) => n, [[1]])))
      assert.strictEqual(refused._tag, "InvalidTask")
    }))

  it.scopedLive("a forged kc.exec message naming node:child_process never executes; it is dead-lettered", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(layer)
      const broker = Context.get(ctx, Broker)
      const taskId = TaskMessage.makeTaskId()
      yield* broker.publish({
        taskId,
        taskName: "kc.exec",
        labels: {},
        args: ["node:child_process", "execSync", [`touch ${marker}`], {}],
        kwargs: {}
      })
      const result = Option.getOrThrow(yield* Context.get(ctx, ResultBackend).wait(taskId, Duration.seconds(10)))
      assert.isTrue(result.isErr)
      assert.strictEqual(result.error?.excType, "InvalidTask")
      assert.include(String(result.error?.excMessage[0]), "ForbiddenModule")
      const dead = yield* broker.deadLetters()
      assert.strictEqual(dead[0]?.taskId, taskId)
      yield* Effect.sleep("200 millis")
      assert.isFalse(existsSync(marker), "no command ran")
    }))
})
