/**
 * Opt-in tracing: a span per submission (`taskiq.send <task>`) and per run (`taskiq.run <task>`), with the trace
 * carried from producer to worker in the message's `traceparent` label (W3C Trace Context, as HTTP headers carry it).
 * Off by default, so that no task pays for spans nobody reads; the spans go to whatever Effect `Tracer` the program
 * runs with (e.g. `@effect/opentelemetry`'s).
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"

/** Whether submissions and runs are traced (default `false`); a worker reads it once, when it starts. */
export class TaskTracing extends Context.Reference<TaskTracing>()("effect-taskiq/TaskTracing", {
  defaultValue: (): boolean => false
}) {}

/** Turns tracing on for the producers and workers this layer is provided to. */
export const layer: Layer.Layer<never> = Layer.succeed(TaskTracing, true)

/** The message label that carries the submitting span's context. */
export const traceparentLabel = "traceparent"

/** A span's context as a W3C `traceparent` value: version, trace id, span id, flags (sampled or not). */
export const format = (span: Tracer.AnySpan): string => `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The remote parent a `traceparent` label names, if it is a valid one (all-zero ids are invalid, as in the spec). */
export const parse = (value: unknown): Option.Option<Tracer.ExternalSpan> => {
  if (typeof value !== "string") return Option.none()
  const m = traceparentPattern.exec(value)
  if (m === null || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return Option.none()
  return Option.some(Tracer.externalSpan({ traceId: m[1]!, spanId: m[2]!, sampled: (parseInt(m[3]!, 16) & 1) === 1 }))
}
