/**
 * The App the chaos harness starts `taskiq worker chaos/app.ts:app --workers 1` with: the private Redis, queue
 * and result prefix come from the environment (read at import), and the lease is short so that the messages
 * of SIGKILLed workers are reclaimed within seconds.
 */
import * as App from "../src/App.js"
import * as Taskiq from "../src/Taskiq.js"
import { record } from "./tasks.js"

const env = (name: string): string => {
  const v = process.env[name]
  if (v === undefined) throw new Error(`${name} is not set (this App is started by chaos/run.ts)`)
  return v
}

export const app = App.make({
  layer: Taskiq.layerRedis({ url: env("CHAOS_REDIS_URL"), queueName: env("CHAOS_QUEUE"), resultPrefix: env("CHAOS_PREFIX") }),
  tasks: [record],
  worker: {
    maxAsyncTasks: Number(process.env.CHAOS_MAX_ASYNC_TASKS ?? 50),
    leaseMs: Number(process.env.CHAOS_LEASE_MS ?? 2_000),
    blockMs: 200,
    shutdownTimeout: "2 seconds"
  }
})
