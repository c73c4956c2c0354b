/**
 * Worker child for the raw ceiling: ioredis and Redis Streams with no framework. One loop reads
 * `XREADGROUP COUNT 256`, "runs" each no-op task (parses its JSON, builds a taskiq-shaped result), then
 * writes one pipeline: `SET result PX` per task, `XACK` and `XDEL` for the batch; it checks the replies
 * before the next read. Round-trip mode also `LPUSH`es each result to a per-task list the producer
 * `BLPOP`s, the cheapest push notification Redis has. A pause is a flag the loop checks between reads: what
 * it read is written and acknowledged first; `CLIENT UNBLOCK` cuts an idle blocking read short.
 */
import { hostname } from "node:os"
import { Redis } from "ioredis"
import { runChild } from "./worker-common.js"

export interface RawWorkerConfig {
  readonly url: string
  readonly stream: string
  readonly group: string
  readonly resultPrefix: string
  /** Set in round-trip mode: results are also pushed to `<notifyPrefix>:<task_id>`. */
  readonly notifyPrefix: string | undefined
  readonly readCount: number
  readonly resultTtlMs: number
}

runChild<RawWorkerConfig>(async (config) => {
  // A blocking read holds its connection, so reads and writes get one each.
  const reader = new Redis(config.url, { maxRetriesPerRequest: null })
  const writer = new Redis(config.url)
  const consumer = `${hostname()}-${process.pid}`
  try {
    await writer.xgroup("CREATE", config.stream, config.group, "0", "MKSTREAM")
  } catch (e) {
    if (!String(e).includes("BUSYGROUP")) throw e
  }

  // Cut short by CLIENT UNBLOCK, a blocking read returns nothing, as on a timeout: so a pause need not wait out BLOCK.
  const readerId = await reader.client("ID")

  let done = 0
  let stopping = false
  // While paused: `parked` resolves once the loop is parked, and `unpark` lets it go on.
  let paused: { parked: Promise<void>; onParked: () => void; unpark: () => void; resumed: Promise<void> } | undefined
  const loop = async () => {
    while (!stopping) {
      if (paused !== undefined) {
        paused.onParked()
        await paused.resumed
        continue
      }
      const reply = await reader.xreadgroup(
        "GROUP", config.group, consumer, "COUNT", config.readCount, "BLOCK", 1000, "STREAMS", config.stream, ">"
      ) as Array<[string, Array<[string, Array<string>]>]> | null
      const entries = reply?.[0]?.[1]
      if (!entries || entries.length === 0) continue
      const pipeline = writer.pipeline()
      const ids: Array<string> = []
      for (const [id, fields] of entries) {
        const started = performance.now()
        const message = JSON.parse(fields[1]!) as { task_id: string; labels: unknown }
        const result = JSON.stringify({
          is_err: false,
          log: null,
          return_value: null,
          execution_time: (performance.now() - started) / 1000,
          labels: message.labels,
          error: null
        })
        pipeline.set(`${config.resultPrefix}:${message.task_id}`, result, "PX", config.resultTtlMs)
        if (config.notifyPrefix !== undefined) {
          const list = `${config.notifyPrefix}:${message.task_id}`
          pipeline.lpush(list, result).pexpire(list, 60_000)
        }
        ids.push(id)
      }
      pipeline.xack(config.stream, config.group, ...ids).xdel(config.stream, ...ids)
      const replies = await pipeline.exec()
      const failed = replies?.find(([error]) => error !== null)
      if (failed) throw failed[0]
      done += entries.length
    }
  }
  const running = loop()
  // A failed loop would leave the queue undrained: die at once, so the harness fails fast with this message.
  running.catch((e) => {
    console.error(`raw worker loop failed: ${e instanceof Error ? e.message : String(e)}`)
    process.exit(1)
  })
  return {
    done: () => done,
    pause: async () => {
      if (paused === undefined) {
        let onParked!: () => void
        let unpark!: () => void
        const parked = new Promise<void>((resolve) => (onParked = resolve))
        const resumed = new Promise<void>((resolve) => (unpark = resolve))
        paused = { parked, onParked, unpark, resumed }
        // Should the read not be blocked yet, the loop still parks, at the latest after one BLOCK period.
        await writer.client("UNBLOCK", readerId)
      }
      await paused.parked
    },
    resume: async () => {
      const was = paused
      paused = undefined
      // The loop goes on to its next read as soon as this returns.
      was?.unpark()
    },
    stop: async () => {
      // The loop notices within one BLOCK period (1 s), or at once when parked; then the connections can go.
      stopping = true
      paused?.unpark()
      await running
      reader.disconnect()
      writer.disconnect()
    }
  }
})
