/**
 * A plain exported async function (`add`, examples/kc_tasks.ts) run by a worker through `kc.exec`, from an
 * Effect program run as a script by `runMain`. Needs a worker: `npx taskiq worker examples/app.ts:app --workers 1`.
 */
import { Effect } from "effect"
import { runMain, scheduleAsync } from "effect-taskiq"
import { app } from "./app.js"
import { add, text } from "./kc_tasks.js"

runMain(
  Effect.gen(function*() {
    const handle = yield* scheduleAsync(add, 1, 2)             // the message: kc.exec("kc_tasks.ts", "add", [1, 2], {})
    const result = yield* handle.waitResult({ timeout: "10 seconds" })
    console.log("kc.exec add(1, 2):", result.isErr, result.returnValue, result.error, result.executionTime)
    console.log("kc.exec text.shout('hi'):", yield* scheduleAsync(text.shout, "hi").pipe(Effect.flatMap((h) => h.result())))
  }),
  { app }                                        // the same options as TaskiqClient (url, queueName, modules, layer, …)
)
