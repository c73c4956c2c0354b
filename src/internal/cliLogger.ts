/**
 * The worker command's logger: one line a message on stderr, `<ISO time> <LEVEL> [worker N] message key=value`,
 * followed by the pretty cause when there is one. Supervised workers are told apart by their `worker`
 * annotation.
 */
import * as Cause from "effect/Cause"
import * as HashMap from "effect/HashMap"
import * as Inspectable from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"

const text = (u: unknown): string => typeof u === "string" ? u : Inspectable.toStringUnknown(u, 0)

/** The logger. */
export const logger: Logger.Logger<unknown, void> = Logger.make(({ annotations, cause, date, logLevel, message }) => {
  const parts = Array.isArray(message) ? message : [message]
  let prefix = ""
  let extra = ""
  for (const [key, value] of HashMap.toEntries(annotations)) {
    if (key === "worker") prefix = `[worker ${text(value)}] `
    else extra += ` ${key}=${text(value)}`
  }
  let line = `${date.toISOString()} ${logLevel.label.padEnd(7)} ${prefix}${parts.map(text).join(" ")}${extra}\n`
  if (!Cause.isEmpty(cause)) line += `${Cause.pretty(cause, { renderErrorCause: true })}\n`
  process.stderr.write(line)
})

/** Replaces Effect's default logger with this one. */
export const layer: Layer.Layer<never> = Logger.replace(Logger.defaultLogger, logger)
