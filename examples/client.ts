/**
 * The same tasks without Effect: `TaskiqClient`, Promises and plain objects. Needs a worker:
 * `npx taskiq worker examples/app.ts:app --workers 1`; then `npx tsx examples/client.ts`.
 */
import { TaskiqClient } from "effect-taskiq"
import { add } from "./kc_tasks.js"                    // export async function add(a: number, b: number) { … }
import { DivisionByZero, divide } from "./tasks.js"   // a declared task (Task.make) with a typed failure

// Redis settings from the environment and .env; the task modules for kc.exec, named as the worker names them.
const tc = new TaskiqClient({ appDir: import.meta.dirname, modules: ["kc_tasks.ts"] })   // or: { app }
await tc.startup()                                     // connects; rejects with BrokerError if Redis is unreachable

const handle = await tc.scheduleAsync(add, 1, 2)       // a plain exported async function, run through kc.exec
const result = await handle.waitResult(5)              // timeout in seconds (default 60; Infinity waits for ever)
console.log("kc.exec add(1, 2):", result.isErr, result.returnValue, result.error, result.executionTime) // false 3 null 0.0004
console.log("divide(6, 3):", await (await tc.scheduleAsync(divide, 6, 3)).result())                     // 2: just the value

const failed = await (await tc.scheduleAsync(divide, 1, 0)).waitResult(5)   // a failure is a result too
console.log("divide(1, 0):", failed.isErr, failed.returnValue, failed.error?.excType)                  // true null DivisionByZero
try {
  await (await tc.scheduleAsync(divide, 1, 0)).result(5)                    // result() rejects with the typed error
} catch (e) {
  if (e instanceof DivisionByZero) console.log(`result() rejected with DivisionByZero (dividend ${e.dividend})`)
  else throw e
}

await tc.shutdown()                                    // closes every connection
