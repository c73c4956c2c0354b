/**
 * `scheduleAsyncSync`: a task id without `await`, for scripts, REPL one-liners and synchronous callbacks.
 * Needs a worker: `npx taskiq worker examples/app.ts:app --workers 1`; then `npx tsx examples/sync.ts`.
 */
import { scheduleAsyncSync, TaskiqClient } from "effect-taskiq"
import { add } from "./kc_tasks.js"
import { divide } from "./tasks.js"

const taskId = scheduleAsyncSync(divide, 6, 3)   // returns once Redis has the message
// SyncPublisher.configure({ url, queueName, timeout: 5 }) to publish elsewhere than TASKIQ_REDIS_URL / TASKIQ_QUEUE_NAME
console.log("scheduleAsyncSync(divide, 6, 3):", /^[0-9a-f]{32}$/.test(taskId) ? "a task id" : taskId)

// Exported async functions (kc.exec) need a started client, whose task registry finds their module:
const tc = new TaskiqClient({ appDir: import.meta.dirname, modules: ["kc_tasks.ts"] })
await tc.startup()
const id = tc.scheduleAsyncSync(add, 1, 2)       // on the client's Redis and queue
const sum = await tc.handle(id).result()         // 3, once a worker has run it
console.log("tc.scheduleAsyncSync(add, 1, 2):", sum, "| divide(6, 3):", await tc.handle(taskId).result())
await tc.shutdown()
