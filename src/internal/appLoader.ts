/**
 * Loads the `<module>:<export>` the worker command is given: a file below the app dir (with or without its
 * extension) or a package specifier, and an export that is an `App`, a Layer providing Broker and
 * ResultBackend, or an object with such a `layer` (read as `App.make` options).
 */
import { existsSync, statSync } from "node:fs"
import { createRequire } from "node:module"
import { isAbsolute, join, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as App from "../App.js"
import { CliError } from "../cli/CliError.js"

const exportPath = /^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*$/
const extensions = ["", ".ts", ".js", ".mts", ".mjs", ".cts", ".cjs"]

/** A parsed `<module>:<export>`. */
export interface AppSpec {
  readonly module: string
  readonly exportName: string
}

/** Splits `<module>:<export>` at its last colon (a Windows drive letter keeps its own). */
export const parseSpec = (spec: string): Effect.Effect<AppSpec, CliError> => {
  const i = spec.lastIndexOf(":")
  const module = i > 0 ? spec.slice(0, i) : ""
  const exportName = i > 0 ? spec.slice(i + 1) : ""
  return module === "" || !exportPath.test(exportName)
    ? Effect.fail(
      new CliError({
        reason: "InvalidAppSpec",
        detail: `expected <module>:<export>, e.g. examples/app.ts:app (the module exporting your App and the export's name); got "${spec}"`
      })
    )
    : Effect.succeed({ module, exportName })
}

const isFile = (path: string) => existsSync(path) && statSync(path).isFile()

/** A path-looking module: relative, absolute, or named with a script extension. */
const looksLikePath = (module: string) =>
  module.startsWith(".") || isAbsolute(module) || /\.(?:[cm]?[jt]s)$/.test(module)

const errorText = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)

/** The URL to import for `module`, looked up below `appDir` first, then as a package from `appDir`. */
const locate = (module: string, appDir: string): Effect.Effect<string, CliError> => {
  const asPath = resolve(appDir, module)
  const candidates = [
    ...extensions.map((ext) => asPath + ext),
    ...extensions.slice(1).map((ext) => join(asPath, `index${ext}`))
  ]
  const file = candidates.find(isFile)
  if (file !== undefined) return Effect.succeed(pathToFileURL(file).href)
  if (looksLikePath(module)) {
    return Effect.fail(
      new CliError({
        reason: "AppNotFound",
        detail: `cannot find the app module "${module}": no file ${asPath} (nor with a .ts/.js extension); ` +
          `module paths are relative to --app-dir (${appDir})`
      })
    )
  }
  // A package specifier, resolved from the app dir; an ESM-only package that `require` cannot resolve is
  // resolved as an import (from this package's place, which is below the app's node_modules when installed).
  return Effect.suspend(() => {
    try {
      return Effect.succeed(pathToFileURL(createRequire(join(appDir, "package.json")).resolve(module)).href)
    } catch {
      try {
        return Effect.succeed(import.meta.resolve(module))
      } catch {
        return Effect.fail(
          new CliError({
            reason: "AppNotFound",
            detail: `cannot find the app module "${module}": it is neither a file below --app-dir (${appDir}) nor an installed package`
          })
        )
      }
    }
  })
}

const describe = (u: unknown) =>
  u === null ? "null" : Array.isArray(u) ? "an array" : typeof u === "object" ? "an object without a `layer`" : `a ${typeof u}`

/** Imports `<module>:<export>` relative to `appDir` and returns it as an `App`. */
export const loadApp = (spec: string, appDir: string): Effect.Effect<App.App, CliError> =>
  Effect.gen(function*() {
    const { exportName, module } = yield* parseSpec(spec)
    const url = yield* locate(module, appDir)
    const namespace = yield* Effect.tryPromise({
      try: () => import(url) as Promise<Record<string, unknown>>,
      catch: (cause) =>
        new CliError({ reason: "AppImportFailed", detail: `importing the app module "${module}" failed: ${errorText(cause)}`, cause })
    })
    let value: unknown = namespace
    for (const part of exportName.split(".")) {
      if ((typeof value !== "object" && typeof value !== "function") || value === null || !(part in value)) {
        const exports = Object.keys(namespace)
        return yield* new CliError({
          reason: "ExportNotFound",
          detail: `the app module "${module}" has no export "${exportName}" (it exports: ${exports.join(", ") || "nothing"})`
        })
      }
      value = (value as Record<string, unknown>)[part]
    }
    if (App.isApp(value)) return value
    if (Layer.isLayer(value)) return App.make({ layer: value as App.AppOptions["layer"] })
    if (typeof value === "object" && value !== null && Layer.isLayer((value as { layer?: unknown }).layer)) {
      return App.make(value as App.AppOptions)
    }
    return yield* new CliError({
      reason: "NotAnApp",
      detail: `${module}:${exportName} is ${describe(value)}, not an App: export \`App.make({ tasks, ... })\` from effect-taskiq ` +
        "(or a Layer providing Broker and ResultBackend, or an object with such a `layer`)"
    })
  })
