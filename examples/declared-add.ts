/**
 * A declared task (`my.add`, examples/tasks.ts) submitted with `.kiq` and with `scheduleAsync`, in Effect.
 * Needs a worker: `npx taskiq worker examples/app.ts:app --workers 1`; then `npx tsx examples/declared-add.ts`.
 */
import { Effect } from "effect"
import { scheduleAsync, Taskiq } from "effect-taskiq"
import { add } from "./tasks.js"

const program = Effect.gen(function*() {
  const handle = yield* add.kiq(1, 2)                          // or: yield* scheduleAsync(add, 1, 2)
  const result = yield* handle.waitResult({ timeout: "10 seconds" })
  console.log("add.kiq(1, 2):", result.isErr, result.returnValue, result.error, result.executionTime) // false 3 null 0.0003

  const value = yield* scheduleAsync(add, 40, 2).pipe(Effect.flatMap((h) => h.result({ timeout: "10 seconds" })))
  console.log("scheduleAsync(add, 40, 2):", value)             // just the value: 42

  // Many at once, as BullMQ's addBulk: one round trip; every argument list is validated first.
  const handles = yield* add.kiqMany([[1, 1], [2, 2], [3, 3]])
  const sums = yield* Effect.forEach(handles, (h) => h.result({ timeout: "10 seconds" }))
  console.log("add.kiqMany:", sums.join(" "))                  // 2 4 6
})

// The producer needs a Broker (and a ResultBackend to wait); here both come from the environment and `.env`.
program.pipe(Effect.provide(Taskiq.layerRedisConfig()), Effect.runPromise)
