/**
 * A minimal reproduction of the young-generation survival that ioredis pipelines cause (RESULTS.md, "What survives
 * young-generation collections, and why it is not ours alone"): a loop sends pipelines of 256 `SET`s and awaits
 * each. Nothing keeps a finished pipeline, yet ≈ 230 KB per pipeline (≈ 900 bytes per command: the commands, their
 * arguments and written strings) is promoted to the old generation and freed only by the next full collection;
 * scavenges pause 5–15 ms. The cause is the `length` getter ioredis's Pipeline constructor defines on each instance
 * (`Object.defineProperty(this, "length", { get })`, a new closure each time, which holds the pipeline): with the
 * getter on the prototype instead (`getter-on-prototype`), ≈ 2.5 KB per pipeline is promoted and the loop runs 1.6–1.8×
 * as fast. Emptying each finished pipeline's command list (`clear`) also cuts it (≈ 11 KB); the same 256 commands sent
 * separately (`separate`) promote ≈ 6 KB. Compare the `promoted=` of the `gc=s` lines:
 *   node --trace-gc-nvp --import tsx bench/pipeline-promotion-repro.ts [pipeline | getter-on-prototype | clear | separate] | grep gc=s | tail -3
 * Uses TASKIQ_REDIS_URL (default redis://127.0.0.1:6379/0), keys `tqrepro-<pid>:*`, deleted at the end.
 */
import { Redis } from "ioredis"

const variants = ["pipeline", "getter-on-prototype", "clear", "separate"]
const variant = process.argv[2] ?? "pipeline"
if (!variants.includes(variant)) {
  console.error(`unknown variant "${variant}": one of ${variants.join(", ")}`)
  process.exit(2)
}
if (variant === "getter-on-prototype") {
  // For the experiment only: skip the per-instance getter, and answer `length` from the prototype.
  const define = Object.defineProperty
  Object.defineProperty = <T>(o: T, key: PropertyKey, d: PropertyDescriptor & ThisType<any>): T =>
    key === "length" && (o as { isPipeline?: boolean }).isPipeline === true && d.get !== undefined ? o : define(o, key, d)
  // A CommonJS module: its class is `exports.default`, which an ESM import may or may not unwrap.
  type Class = { prototype: object }
  const module = (await import("ioredis/built/Pipeline.js")) as unknown as { default: Class | { default: Class } }
  const Pipeline = "prototype" in module.default ? module.default : module.default.default
  define(Pipeline.prototype, "length", { get(this: { _queue: Array<unknown> }) { return this._queue.length } })
}
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
