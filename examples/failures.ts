/**
 * Failed tasks, in Effect: a declared task's typed failure comes back as itself; the untyped view of any
 * failure is a result with `isErr: true` and `error`. Needs a worker: `npx taskiq worker examples/app.ts:app --workers 1`.
 */
import { Effect } from "effect"
import { Main, scheduleAsync, TaskResult } from "effect-taskiq"
import { app } from "./app.js"
import { parseAmount } from "./kc_tasks.js"
import { divide } from "./tasks.js"

const outcome = divide.kiq(1, 0).pipe(
  Effect.flatMap((handle) => handle.result()),
  Effect.catchTag("DivisionByZero", (e) => Effect.succeed(`cannot divide ${e.dividend} by zero`))
)

const program = Effect.gen(function*() {
  console.log("divide(1, 0) ->", yield* outcome)               // cannot divide 1 by zero

  const failed = yield* divide.kiq(1, 0).pipe(Effect.flatMap((h) => h.waitResult()))
  console.log("divide(1, 0):", failed.isErr, failed.returnValue, failed.error?.excType, failed.executionTime)

  const rejected = yield* scheduleAsync(parseAmount, "12,5").pipe(Effect.flatMap((h) => h.waitResult()))
  const error = rejected.error!                                // { excType, excMessage, excModule, pretty }
  console.log("kc.exec parseAmount('12,5'):", rejected.isErr, `${error.excType}: ${TaskResult.errorMessage(error)}`)

  // `result()` turns a failure without a typed error into TaskFailed.
  const message = yield* scheduleAsync(parseAmount, "abc").pipe(
    Effect.flatMap((h) => h.result()),
    Effect.catchTag("TaskFailed", (e) => Effect.succeed(e.message))
  )
  console.log("result():", message)
})

program.pipe(Effect.provide(Main.layer({ app })), Effect.runPromise)
