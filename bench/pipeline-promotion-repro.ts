/**
 * A minimal reproduction of the young-generation survival that ioredis pipelines cause (RESULTS.md, "What survives
 * young-generation collections, and why it is not ours alone"): a loop sends pipelines of 256 `SET`s and awaits
 * each. Nothing keeps a finished pipeline, yet ≈ 220 KB per pipeline (≈ 850 bytes per command: the commands, their
 * arguments and written strings) is promoted to the old generation and freed only by the next full collection;
 * scavenges pause 5–15 ms. Emptying the finished pipeline's command list (`clear`) cuts it ≈ 18×, so something the
 * old generation holds still points at finished pipelines. The same 256 commands sent as separate commands
 * (`separate`) promote ≈ 20 bytes per command. Compare the `promoted=` of the `gc=s` lines:
 *   node --trace-gc-nvp --import tsx bench/pipeline-promotion-repro.ts [pipeline | clear | separate] | grep gc=s | tail -3
 * Uses TASKIQ_REDIS_URL (default redis://127.0.0.1:6379/0), keys `tqrepro-<pid>:*`, deleted at the end.
 */
import { Redis } from "ioredis"

const variant = process.argv[2] ?? "pipeline"
const redis = new Redis(process.env.TASKIQ_REDIS_URL ?? "redis://127.0.0.1:6379/0")
const prefix = `tqrepro-${process.pid}`
const value = "x".repeat(150)
const started = Date.now()
let ops = 0
while (Date.now() - started < 4000) {
  if (variant === "separate") {
    await Promise.all(Array.from({ length: 256 }, (_, j) => redis.set(`${prefix}:${j}`, value + ops, "PX", 10_000)))
  } else {
    const pipeline = redis.pipeline()
    for (let j = 0; j < 256; j++) pipeline.set(`${prefix}:${j}`, value + ops, "PX", 10_000)
    await pipeline.exec()
    // ioredis internals, for the experiment only: the finished pipeline's commands and results.
    if (variant === "clear") Object.assign(pipeline, { _queue: [], _result: [] })
  }
  ops++
}
console.log(`${variant}: ${ops} rounds of 256 commands`)
await redis.unlink(...Array.from({ length: 256 }, (_, j) => `${prefix}:${j}`))
redis.disconnect()
