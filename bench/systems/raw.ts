/**
 * The raw ceiling, producer side: `XADD` of the same taskiq message JSON our producer writes, on an
 * auto-pipelined ioredis connection (as ours), with an explicit pipeline per batch; round trips block
 * on the list the raw worker pushes each result to.
 */
import { randomUUID } from "node:crypto"
import { Redis } from "ioredis"
import { taskName } from "../tasks.js"
import { batches, inLanes, withTimeout } from "../util.js"
import type { RawWorkerConfig } from "../worker-raw.js"
import { resultTtlMs, type Target, type TargetOptions } from "./target.js"

const message = (taskId: string) =>
  JSON.stringify({ task_id: taskId, task_name: taskName, labels: {}, labels_types: {}, args: [], kwargs: {} })

const newTaskId = () => randomUUID().replace(/-/g, "")

export const makeRaw = async (options: TargetOptions): Promise<Target> => {
  const stream = `${options.root}-q`
  const resultPrefix = `${options.root}-r`
  const notifyPrefix = `${options.root}-n`
  const client = new Redis(options.url, { enableAutoPipelining: true, lazyConnect: true })
  await withTimeout(client.connect(), 10_000, "connecting the raw producer")
  let blocking: Redis | undefined
  const add = () => client.xadd(stream, "*", "data", message(newTaskId()))

  return {
    system: "raw",
    root: options.root,
    resultPrefix,
    sequential: async (n) => {
      for (let i = 0; i < n; i++) await add()
    },
    concurrent: (n, inFlight) => inLanes(n, inFlight, add),
    batched: async (n, batch) => {
      for (const size of batches(n, batch)) {
        const pipeline = client.pipeline()
        for (let i = 0; i < size; i++) pipeline.xadd(stream, "*", "data", message(newTaskId()))
        await pipeline.exec()
      }
    },
    outstanding: () => client.xlen(stream),
    roundTrips: async (m, timeoutMs) => {
      blocking ??= new Redis(options.url)
      const latencies: Array<number> = []
      for (let i = 0; i < m; i++) {
        const started = performance.now()
        const taskId = newTaskId()
        await client.xadd(stream, "*", "data", message(taskId))
        const reply = await blocking.blpop(`${notifyPrefix}:${taskId}`, timeoutMs / 1000)
        if (reply === null) throw new Error(`raw round trip: no result for ${taskId} within ${timeoutMs} ms`)
        latencies.push(performance.now() - started)
      }
      return latencies
    },
    workerSpec: (_concurrency, label, nodeArgs) => ({
      script: "./worker-raw.ts",
      label,
      // The raw loop reads 256 whatever the concurrency: it is the ceiling, not a like-for-like worker.
      config: {
        url: options.url,
        stream,
        group: "taskiq",
        resultPrefix,
        notifyPrefix: options.mode === "roundtrip" ? notifyPrefix : undefined,
        readCount: 256,
        resultTtlMs
      } satisfies RawWorkerConfig,
      nodeArgs: nodeArgs ?? []
    }),
    close: async () => {
      client.disconnect()
      blocking?.disconnect()
    }
  }
}
