/**
 * `runMain(program)`: runs an Effect program as a script's main, with the default layer (Broker,
 * ResultBackend and TaskRegistry, configured from the environment and `.env`), closes every connection
 * when it ends, and sets the exit code (0 on success, 1 on failure; SIGINT/SIGTERM interrupt it gracefully).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as settings from "./internal/settings.js"

/**
 * Where the services come from: `layer` (or an `app`'s layer) if given, else Redis configured by these
 * options and, for what they leave out, the environment and `.env` (`TASKIQ_REDIS_URL`, `TASKIQ_QUEUE_NAME`,
 * `TASKIQ_RESULT_EX_TIME` / `_PX_TIME`, `TASKIQ_RESULT_PREFIX`). The task registry (for `kc.exec`) is
 * given by `modules` / `fsDiscover` / `appDir` / `tasksPattern`, or by the app.
 */
export interface LayerOptions extends settings.LayerOptions {}

/** What a program run by `runMain` may use. */
export type Services = settings.Services

/** Options of `runMain`. */
export interface RunMainOptions extends LayerOptions {
  /** Do not log the failure before exiting with code 1. */
  readonly disableErrorReporting?: boolean | undefined
  /** Keep the current logger instead of the pretty one. */
  readonly disablePrettyLogger?: boolean | undefined
}

/** The default layer: Broker, ResultBackend and TaskRegistry, as `LayerOptions` describe. */
export const layer = (options: LayerOptions = {}): Layer.Layer<Services, unknown> => settings.makeLayer(options)

/** The exit code for an outcome: 0 on success or interruption alone, 1 on failure. */
export const exitCode = (exit: Exit.Exit<unknown, unknown>): number =>
  Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? 1 : 0

// The pretty logger, with errors on stderr where scripts and their callers look for them.
const prettyOut = Logger.prettyLogger()
const prettyErr = Logger.prettyLogger({ stderr: true })
const prettyLeveled = Logger.replace(
  Logger.defaultLogger,
  Logger.make((entry) =>
    LogLevel.greaterThanEqual(entry.logLevel, LogLevel.Error) ? prettyErr.log(entry) : prettyOut.log(entry)
  )
)

/**
 * Runs `program` with the default layer, releases it (closing every connection), logs a failure (to
 * stderr), sets `process.exitCode` and, on failure or a signal, exits with it (NodeRuntime.runMain).
 */
export const runMain = <A, E>(program: Effect.Effect<A, E, Services>, options: RunMainOptions = {}): void => {
  let main = Effect.provide(program, layer(options))
  if (options.disableErrorReporting !== true) {
    main = main.pipe(Effect.tapErrorCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause)))
  }
  if (options.disablePrettyLogger !== true) main = Effect.provide(main, prettyLeveled)
  NodeRuntime.runMain(main, {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) => {
      const code = exitCode(exit)
      process.exitCode = code
      onExit(code)
    }
  })
}
