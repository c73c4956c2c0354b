/**
 * Task control: progress pushed to the caller, cancellation, priorities and deduplication.
 * Needs a worker: `npx taskiq worker examples/app.ts:app --workers 1`.
 */
import { Effect, Stream } from "effect"
import { scheduleWith, Taskiq } from "effect-taskiq"
import { add, resize, slowEcho } from "./tasks.js"

const program = Effect.gen(function*() {
  // Progress: each state the handler reports is pushed to the stream, which ends when the task does.
  const job = yield* resize.kiq("photo.jpg", 3)
  yield* job.progress.pipe(Stream.runForEach((p) => Effect.sync(() => console.log(`progress: ${p.state} ${JSON.stringify(p.meta)}`))))
  console.log(`resize: ${yield* job.result()}`)

  // Cancellation: a queued task never starts, a running one is interrupted; callers get TaskCancelled.
  const slow = yield* slowEcho.kiq("never mind", 1_500)
  yield* Effect.sleep("200 millis")
  const cancelled = yield* slow.cancel("the user closed the page")
  const outcome = yield* slow.result().pipe(Effect.catchTag("TaskCancelled", (e) => Effect.succeed(`${e._tag}: ${e.reason}`)))
  console.log(`cancel: ${cancelled} -> ${outcome}`)

  // Priorities: high-priority tasks are read before normal and low ones whenever several wait.
  const urgent = yield* scheduleWith(add, { priority: "high" }, 2, 2)
  console.log(`high-priority add(2, 2): ${yield* urgent.result()}`)

  // Deduplication: while a task with this key is queued or running, submitting again returns its handle.
  const key = `nightly-report-${Date.now()}`
  const first = yield* scheduleWith(slowEcho, { idempotencyKey: key }, "report", 300)
  const second = yield* scheduleWith(slowEcho, { idempotencyKey: key }, "report", 300)
  console.log(`deduplicated: ${second.deduplicated}, same task: ${second.taskId === first.taskId}`)
  console.log(`report: ${yield* second.result()}`)
})

program.pipe(Effect.provide(Taskiq.layerRedisConfig()), Effect.runPromise)
