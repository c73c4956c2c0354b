/**
 * What the Troubleshooting answers in README.md show, for real: each problem and the error it gives.
 * `npx tsx examples/troubleshooting.ts` — the last case (a long task) needs a worker:
 * `npx taskiq worker examples/app.ts:app --workers 1`.
 */
import { Redis } from "ioredis"
import { TaskiqClient } from "effect-taskiq"
import { add, slowEcho } from "./tasks.js"

const describe = (e: unknown) => e instanceof Error ? `${e.name}: ${e.message}` : String(e)

// 1. A task never runs: no worker consumes its queue. waitResult rejects with ResultTimeout.
const lonely = new TaskiqClient({ queueName: `${process.env.TASKIQ_QUEUE_NAME ?? "kc_taskiq_queue"}-no-worker` })
await lonely.startup()
try {
  await (await lonely.scheduleAsync(add, 1, 2)).waitResult(1)
} catch (e) {
  console.log("1. no worker:", describe(e))
} finally {
  // Tidy up: the task would stay queued there until a worker came.
  const redis = new Redis(process.env.TASKIQ_REDIS_URL ?? "redis://127.0.0.1:6379/0")
  await redis.del(lonely.queueName)
  redis.disconnect()
  await lonely.shutdown()
}

// 2. Redis is unreachable: startup() rejects with BrokerError (the password is shown as ***).
const unreachable = new TaskiqClient({ url: "redis://user:secret@127.0.0.1:1/0", connectTimeout: 1 })
await unreachable.startup().catch((e) => console.log("2. Redis unreachable:", describe(e)))
await unreachable.shutdown()

const tc = new TaskiqClient({ appDir: import.meta.dirname, modules: ["kc_tasks.ts"] })
await tc.startup()

// 3. A function that is not `async` (here: it returns a Promise, but is not declared async) is refused.
function addLater(a: number, b: number): Promise<number> {
  return Promise.resolve(a + b)
}
await tc.scheduleAsync(addLater, 1, 2).catch((e) => console.log("3. not async:", describe(e)))
// … and so is a lambda (no worker could import it).
await tc.scheduleAsync(async (a: number) => a, 1).catch((e) => console.log("3. a lambda:", describe(e)))

// 4. A long task: my.slow_echo declares `timeout: "2 seconds"`; past it the handler is interrupted.
const slow = await (await tc.scheduleAsync(slowEcho, "too slow", 5_000)).waitResult(30)
console.log("4. long task:", slow.isErr, slow.error?.excType, slow.error?.excMessage[0])

await tc.shutdown()
