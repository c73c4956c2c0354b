/**
 * A handler that reads its running task (id, attempt, labels) and tags its logs with it. Runs on the
 * in-memory layers with a worker in this process: `npx tsx examples/current-task.ts`.
 */
import { Effect, Layer, Logger } from "effect"
import { CurrentTask, Executor, scheduleWith, Task, Taskiq, Worker } from "effect-taskiq"

const report = Task.make("reports.build", (month: string) =>
  Effect.gen(function*() {
    const task = yield* CurrentTask.current
    yield* Effect.log(`building ${month}, attempt ${task.attempt}`)
    return `${month} report for ${task.labels.tenant}`
  }).pipe(CurrentTask.withLogAnnotations))

const program = Effect.gen(function*() {
  const handle = yield* scheduleWith(report, { labels: { tenant: "acme" } }, "2026-11")
  console.log(yield* handle.result({ timeout: "5 seconds" }))
})

const worker = Worker.layer().pipe(Layer.provide(Executor.layer([report])))
program.pipe(
  Effect.provide(worker.pipe(Layer.provideMerge(Taskiq.layerMemory()))),
  Effect.provide(Logger.logFmt),
  Effect.runPromise
)
