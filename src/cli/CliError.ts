/**
 * Why the `taskiq` command could not start or stopped: a bad `<module>:<export>`, task modules that do not
 * load, worker processes that cannot start, a Redis that did not answer in time. Each reason maps to the
 * process exit code.
 */
import * as Schema from "effect/Schema"

/** Exit codes of the `taskiq` command. */
export const ExitCode = {
  /** A clean run, or a clean drain after SIGINT/SIGTERM. */
  ok: 0,
  /** A failure at run time (Redis unreachable, a worker process that did not stop cleanly…). */
  failure: 1,
  /** A usage or configuration error: bad options, a `<module>:<export>` that does not load. Not retried. */
  config: 2
} as const

/** The command's own failures; `reason` says which, `detail` what to do about it. */
export class CliError extends Schema.TaggedError<CliError>()("CliError", {
  reason: Schema.Literal(
    "InvalidAppSpec",
    "AppNotFound",
    "AppImportFailed",
    "ExportNotFound",
    "NotAnApp",
    "MissingService",
    "TaskModules",
    "WorkerStartFailed",
    "ConnectFailed"
  ),
  detail: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return this.detail
  }

  /** A Redis that never answered is a failure at run time (a restart may help); every other reason is a configuration error. */
  get exitCode(): number {
    return this.reason === "ConnectFailed" ? ExitCode.failure : ExitCode.config
  }
}
