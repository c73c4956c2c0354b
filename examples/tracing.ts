/**
 * Tracing: a submission's span is the parent of its run's span, across the queue (the message's `traceparent`
 * label). A small tracer records the spans and prints them as a tree; in a service, provide your OpenTelemetry
 * layer instead (`@effect/opentelemetry`'s `NodeSdk.layer`). In-memory layers and a worker in this process:
 * `npx tsx examples/tracing.ts`.
 */
import { Effect, Layer, Option, Tracer } from "effect"
import { Executor, Task, Taskiq, TaskTracing, Worker } from "effect-taskiq"

const add = Task.make("my.add", (a: number, b: number) => Effect.succeed(a + b).pipe(Effect.withSpan("adding")))

const program = Effect.gen(function*() {
  const handle = yield* add.kiq(1, 2)                          // span "taskiq.send my.add", child of "checkout"
  return yield* handle.result()
}).pipe(Effect.withSpan("checkout"))

// Records every span as Effect's own tracer makes it, to print them once the program is done.
const spans: Array<Tracer.Span> = []
const recording = Layer.unwrapEffect(Effect.map(Effect.tracer, (native) =>
  Layer.setTracer(Tracer.make({
    span: (...args) => {
      const span = native.span(...args)
      spans.push(span)
      return span
    },
    context: (f, fiber) => native.context(f, fiber)
  }))))
const yourTracerLayer = recording

const printTree = () => {
  const depth = (span: Tracer.Span): number => {
    const parent = Option.getOrUndefined(span.parent)
    const known = parent === undefined ? undefined : spans.find((s) => s.spanId === parent.spanId)
    return known === undefined ? 0 : 1 + depth(known)
  }
  const sameTrace = spans.every((s) => s.traceId === spans[0]?.traceId)
  for (const span of spans) console.log(`${"  ".repeat(depth(span))}${span.name}`)
  console.log(`one trace: ${sameTrace}`)
}

program.pipe(
  Effect.provide(Worker.layer({ maxAsyncTasks: 4 }).pipe(Layer.provide(Executor.layer([add])))),  // "taskiq.run my.add"
  Effect.provide(Taskiq.layerMemory()),
  Effect.provide(TaskTracing.layer),
  Effect.provide(yourTracerLayer),                               // e.g. NodeSdk.layer(() => ({ spanProcessor: … }))
  Effect.tap((sum) => Effect.sync(() => console.log(`add(1, 2) = ${sum}`))),
  Effect.runPromise
).then(printTree)
