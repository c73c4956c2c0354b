/**
 * Delays and retries: a submission that runs later, and a task whose retry policy (an Effect Schedule)
 * runs it again until it succeeds. Needs a worker: `npx taskiq worker examples/app.ts:app --workers 1`.
 */
import { Effect } from "effect"
import { scheduleWith, Taskiq } from "effect-taskiq"
import { add, flakyFetch } from "./tasks.js"

const program = Effect.gen(function*() {
  // Runs no sooner than 500 ms from now; the wait is in Redis (a sorted set), not in any worker's slot.
  const started = Date.now()
  const later = yield* scheduleWith(add, { delay: "500 millis" }, 1, 2)
  const sum = yield* later.result({ timeout: "10 seconds" })
  console.log(`delayed add(1, 2): ${sum} after ${Date.now() - started >= 500 ? "at least" : "less than"} 500 ms`)

  // Fails twice, then succeeds: each retry goes back through the delayed queue, counted in `_retries`.
  const fetched = yield* flakyFetch.kiq(`report-${started}`).pipe(Effect.flatMap((h) => h.waitResult({ timeout: "10 seconds" })))
  console.log(`flaky_fetch: isErr=${fetched.isErr} retries=${fetched.labels._retries} -> ${fetched.returnValue}`)
})

program.pipe(Effect.provide(Taskiq.layerRedisConfig()), Effect.runPromise)
