/**
 * BullMQ, producer side: a `Queue` (and, for round trips, a `QueueEvents`) under the queue's own key
 * prefix. Throughput queues use `removeOnComplete: true`, BullMQ's usual setting for high volume.
 */
import { type ConnectionOptions, Queue, QueueEvents } from "bullmq"
import { taskName } from "../tasks.js"
import { batches, inLanes, withTimeout } from "../util.js"
import type { BullmqWorkerConfig } from "../worker-bullmq.js"
import type { Target, TargetOptions } from "./target.js"

/** BullMQ takes ioredis options rather than a URL. */
export const connectionFromUrl = (url: string): ConnectionOptions => {
  const u = new URL(url)
  const db = Number(u.pathname.slice(1) || "0")
  return {
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: Number(u.port || 6379),
    db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {})
  }
}

// BullMQ forbids ':' in queue names; the root goes into the key prefix instead, which may hold anything.
const queueName = "bench"

export const makeBullmq = async (options: TargetOptions): Promise<Target> => {
  const connection = connectionFromUrl(options.url)
  const prefix = options.root
  const queue = new Queue(queueName, {
    connection,
    prefix,
    defaultJobOptions: { removeOnComplete: options.mode === "throughput" }
  })
  await withTimeout(queue.waitUntilReady(), 10_000, "connecting the BullMQ queue")
  let events: QueueEvents | undefined
  const add = () => queue.add(taskName, {})

  return {
    system: "bullmq",
    root: options.root,
    resultPrefix: undefined,
    sequential: async (n) => {
      for (let i = 0; i < n; i++) await add()
    },
    concurrent: (n, inFlight) => inLanes(n, inFlight, add),
    batched: async (n, batch) => {
      for (const size of batches(n, batch)) {
        await queue.addBulk(Array.from({ length: size }, () => ({ name: taskName, data: {} })))
      }
    },
    outstanding: async () => {
      const counts = await queue.getJobCounts("wait", "active", "delayed", "prioritized", "waiting-children", "failed")
      // A failed no-op means the run is broken, not slow: say so instead of waiting for a timeout.
      if ((counts.failed ?? 0) > 0) throw new Error(`${counts.failed} BullMQ jobs failed`)
      return (counts.wait ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) + (counts.prioritized ?? 0) +
        (counts["waiting-children"] ?? 0)
    },
    roundTrips: async (m, timeoutMs) => {
      if (events === undefined) {
        events = new QueueEvents(queueName, { connection, prefix })
        await withTimeout(events.waitUntilReady(), 10_000, "connecting BullMQ QueueEvents")
      }
      const latencies: Array<number> = []
      for (let i = 0; i < m; i++) {
        const started = performance.now()
        const job = await add()
        await job.waitUntilFinished(events, timeoutMs)
        latencies.push(performance.now() - started)
      }
      return latencies
    },
    workerSpec: (concurrency, label, nodeArgs) => ({
      script: "./worker-bullmq.ts",
      label,
      config: { connection, prefix, queueName, concurrency } satisfies BullmqWorkerConfig,
      nodeArgs: nodeArgs ?? []
    }),
    close: async () => {
      await withTimeout(Promise.all([queue.close(), events?.close()]), 10_000, "closing the BullMQ queue")
    }
  }
}
