/**
 * A tracer for tests: Effect's own (the one in effect where it is made), with `onSpan` told of every span it opens, so
 * a test can record spans or follow them to their end.
 */
import * as Effect from "effect/Effect"
import * as Tracer from "effect/Tracer"

export const watchingTracer = (onSpan: (span: Tracer.Span) => void): Effect.Effect<Tracer.Tracer> =>
  Effect.map(Effect.tracer, (native) =>
    Tracer.make({
      span: (...args) => {
        const span = native.span(...args)
        onSpan(span)
        return span
      },
      context: (f, fiber) => native.context(f, fiber)
    }))
