/**
 * The `taskiq` command line (`bin/taskiq.mjs` runs this module once tsx's loader is registered).
 * Exit codes: 0 after a clean run or drain, 1 on a failure at run time, 2 on a usage or configuration error.
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { createRequire } from "node:module"
import * as CliLogger from "../internal/cliLogger.js"
import { CliError, ExitCode } from "./CliError.js"
import * as DlqCommand from "./DlqCommand.js"
import * as WorkerCommand from "./WorkerCommand.js"

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string }

const taskiq = Command.make("taskiq").pipe(
  Command.withDescription("effect-taskiq: a distributed task queue on Effect and Redis Streams, wire-compatible with taskiq."),
  Command.withSubcommands([WorkerCommand.command, DlqCommand.command])
)

const cli = Command.run(taskiq, { name: "taskiq", version })

const errorText = (e: unknown): string => {
  const tag = (e as { _tag?: unknown })?._tag
  const message = e instanceof Error ? e.message : String(e)
  return typeof tag === "string" && !message.startsWith(tag) ? `${tag}: ${message}` : message
}

const setExitCode = (code: number) => Effect.sync(() => (process.exitCode = code))

const program = cli(process.argv).pipe(
  Effect.catchAll((e) =>
    ValidationError.isValidationError(e)
      // @effect/cli has printed the problem and the usage already.
      ? setExitCode(ExitCode.config)
      : e instanceof CliError
      ? Console.error(`taskiq: ${e.message}`).pipe(Effect.zipRight(setExitCode(e.exitCode)))
      // An expected failure (Redis unreachable…): its tag and message say it all; a stack trace would not help.
      : Effect.logError(`taskiq: stopped: ${errorText(e)}`).pipe(Effect.zipRight(setExitCode(ExitCode.failure)))
  ),
  Effect.catchAllDefect((defect) =>
    Effect.logError("taskiq: stopped on a defect", Cause.die(defect)).pipe(Effect.zipRight(setExitCode(ExitCode.failure)))
  ),
  Effect.provide(Layer.mergeAll(NodeContext.layer, CliConfig.layer({ showBuiltIns: true }), CliLogger.layer))
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  disablePrettyLogger: true,
  teardown: (exit, onExit) =>
    onExit(
      Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)
        ? ExitCode.failure
        : typeof process.exitCode === "number"
        ? process.exitCode
        : ExitCode.ok
    )
})
