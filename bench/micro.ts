/**
 * Per-operation costs of the building blocks on our worker's hot path, in-process, no Redis: what a
 * no-op task pays besides the round trips. For reading the end-to-end "worker CPU per task" figure.
 *   npx tsx bench/micro.ts
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import { Executor, TaskMessage, TaskResult } from "effect-taskiq"
import { noop } from "./tasks.js"

const ops = 200_000

const time = async (label: string, make: () => Effect.Effect<unknown, unknown>) => {
  const loop = Effect.forEach(Array.from({ length: ops }), make, { discard: true })
  await Effect.runPromise(loop) // warm-up: let the JIT settle
  const started = performance.now()
  await Effect.runPromise(loop)
  console.log(`${label.padEnd(56)} ${(((performance.now() - started) * 1000) / ops).toFixed(2).padStart(7)} µs`)
}

const json = TaskMessage.encodeJson({ taskId: TaskMessage.makeTaskId(), taskName: noop.name, labels: {}, args: [], kwargs: {} })
const message = TaskMessage.decodeJson(json)
if (message._tag === "Left") throw message.left
const result = TaskResult.succeed(null, 0.00001)
const executor = await Effect.runPromise(Executor.make([noop]))
const retry = Schedule.exponential("50 millis").pipe(Schedule.intersect(Schedule.recurs(5)))
const ok = Effect.succeed(1)
const queue = await Effect.runPromise(Queue.unbounded<number>())

await time("Effect.succeed (the loop itself)", () => ok)
await time("JSON.parse of a task message", () => Effect.sync(() => JSON.parse(json)))
await time("TaskMessage.decodeJson (parse + validation)", () => Effect.sync(() => TaskMessage.decodeJson(json)))
await time("TaskResult.encodeJson", () => Effect.sync(() => TaskResult.encodeJson(result)))
await time("executor.execute(no-op)", () => executor.execute(message.right))
await time("Effect.retry(schedule) around a success", () => Effect.retry(ok, { schedule: retry, while: () => true }))
await time("Effect.tryPromise of a resolved promise", () => Effect.tryPromise({ try: () => Promise.resolve(1), catch: (e) => e }))
await time("Effect.uninterruptibleMask", () => Effect.uninterruptibleMask((restore) => restore(ok)))
await time("Queue.offer + Queue.take", () => Effect.zipRight(Queue.offer(queue, 1), Queue.take(queue)))
