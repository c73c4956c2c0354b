/**
 * The worker's own cost per task, without a producer competing for the CPU: fills a queue with `n` no-op
 * tasks (one `kiqMany` script per 1,000), then starts a worker in this process and times it until the
 * queue is drained (every message acknowledged). Prints wall time, jobs/s and this process's CPU per task.
 *   npx tsx bench/drain.ts [--n=50000] [--concurrency=16] [--prefetch=0] [--reps=3] [--profile | --alloc | --promoted] [--gc]
 *     [--v8-pretenuring]
 * As `taskiq worker` runs a worker, V8's allocation-site pretenuring is turned off first (`--v8-pretenuring` keeps it).
 * `--profile` CPU-profiles the last repetition's drain (bench/profiles/drain.cpuprofile) and prints a summary.
 * `--alloc` samples the last repetition's allocations (also of objects already collected) and prints bytes per task
 * by allocating function: what the garbage collector then has to clear. `--promoted` counts only the objects that
 * outlived a young-generation collection (copied, then promoted: what makes each collection slow).
 * `--gc` prints, per repetition, the garbage collections during the drain: how many young-generation collections
 * (scavenges) and how long they paused the worker (median and longest), how many full ones, and how much the old
 * generation grew per task (what was promoted, when no full collection ran in between).
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { constants as perf, PerformanceObserver } from "node:perf_hooks"
import { getHeapSpaceStatistics } from "node:v8"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Redis } from "ioredis"
import { Executor, Taskiq, Worker } from "effect-taskiq"
import { turnOffPretenuring } from "../src/internal/v8Tuning.js"
import { renderAllocations, renderSummary, summarise } from "./profile-summary.js"
import { noop, runs } from "./tasks.js"

const arg = (name: string, fallback: number) => {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`))
  return hit === undefined ? fallback : Number(hit.slice(name.length + 3))
}
const n = arg("n", 50_000)
const concurrency = arg("concurrency", 16)
const prefetch = arg("prefetch", 0)
const reps = arg("reps", 3)
const profiling = process.argv.includes("--profile")
const promotedOnly = process.argv.includes("--promoted")
const sampling = process.argv.includes("--alloc") || promotedOnly
const watchingGc = process.argv.includes("--gc")
const keepPretenuring = process.argv.includes("--v8-pretenuring")
if (!keepPretenuring) turnOffPretenuring()
const url = process.env.TASKIQ_REDIS_URL ?? "redis://127.0.0.1:6379/0"
const root = `tqdrain-${process.pid}`
const queueName = `${root}-q`
const resultPrefix = `${root}-r`
const redis = new Redis(url)
const layer = Taskiq.layerRedis({ url, queueName, resultPrefix })
const producer = ManagedRuntime.make(layer)

const fill = () =>
  producer.runPromise(Effect.forEach(
    Array.from({ length: Math.ceil(n / 1000) }, (_, i) => Math.min(1000, n - i * 1000)),
    (size) => noop.kiqMany(Array.from({ length: size }, () => [] as [])),
    { discard: true }
  ))

const drained = async () => {
  for (;;) {
    const [len, pending] = await Promise.all([
      redis.xlen(queueName),
      redis.xpending(queueName, "taskiq").then((r) => Number((r as Array<unknown>)[0]))
    ]) as [number, number]
    if (len === 0 && pending === 0) return
    await new Promise((r) => setTimeout(r, 5))
  }
}

const cleanup = async () => {
  for (const pattern of [`${root}*`]) {
    let cursor = "0"
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) await redis.unlink(...keys)
    } while (cursor !== "0")
  }
}

try {
  const rows: Array<{ rate: number; cpu: number }> = []
  for (let rep = 0; rep <= reps; rep++) {
    await fill()
    runs.count = 0
    const worker = Worker.layer({ maxAsyncTasks: concurrency, maxPrefetch: prefetch }).pipe(
      Layer.provide(Executor.layer([noop])),
      Layer.provide(layer),
      Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))
    )
    const session = (profiling || sampling) && rep === reps ? new Session() : undefined
    if (session !== undefined) {
      session.connect()
      if (profiling) {
        await session.post("Profiler.enable")
        await session.post("Profiler.start")
      } else {
        await session.post("HeapProfiler.enable")
        await session.post("HeapProfiler.startSampling", {
          samplingInterval: 256,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: !promotedOnly
        })
      }
    }
    const pauses: Array<{ readonly scavenge: boolean; readonly ms: number }> = []
    const observer = watchingGc
      ? new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind
          pauses.push({ scavenge: kind === perf.NODE_PERFORMANCE_GC_MINOR, ms: e.duration })
        }
      })
      : undefined
    observer?.observe({ entryTypes: ["gc"] })
    const oldSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === "old_space")?.space_used_size ?? 0
    const old0 = oldSpace()
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const runtime = ManagedRuntime.make(worker)
    await runtime.runtime()
    await drained()
    const ms = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    if (observer !== undefined) {
      const grown = oldSpace() - old0
      observer.disconnect()
      const minor = pauses.filter((p) => p.scavenge).map((p) => p.ms).sort((a, b) => a - b)
      const majors = pauses.length - minor.length
      console.log(
        `  gc: ${minor.length} scavenges, pause median ${(minor[minor.length >> 1] ?? 0).toFixed(2)} ms, longest ${
          (minor[minor.length - 1] ?? 0).toFixed(2)
        } ms; ${majors} full; old generation ${majors === 0 ? `+${(grown / n).toFixed(0)} bytes per task` : "(a full collection ran)"}`
      )
    }
    if (session !== undefined && sampling) {
      const { profile } = await session.post("HeapProfiler.stopSampling")
      session.disconnect()
      console.log(renderAllocations(profile.head, n, 25))
    } else if (session !== undefined) {
      const { profile } = await session.post("Profiler.stop")
      const dir = fileURLToPath(new URL("./profiles/", import.meta.url))
      mkdirSync(dir, { recursive: true })
      writeFileSync(`${dir}drain.cpuprofile`, JSON.stringify(profile))
      session.disconnect()
      console.log(renderSummary(summarise(`${dir}drain.cpuprofile`, 30)))
    }
    await runtime.dispose()
    if (runs.count < n) throw new Error(`only ${runs.count} of ${n} ran`)
    const row = { rate: n / (ms / 1000), cpu: (cpu.user + cpu.system) / n }
    if (rep > 0) rows.push(row) // the first is warm-up
    console.log(`${rep === 0 ? "warm-up" : `rep ${rep}`}: ${Math.round(row.rate)} jobs/s, ${row.cpu.toFixed(1)} µs CPU per task`)
  }
  const median = (xs: Array<number>) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  console.log(`median: ${Math.round(median(rows.map((r) => r.rate)))} jobs/s, ${median(rows.map((r) => r.cpu)).toFixed(1)} µs CPU per task (n ${n}, c${concurrency}, prefetch ${prefetch}${keepPretenuring ? ", V8 pretenuring on" : ""})`)
} finally {
  await cleanup()
  await producer.dispose()
  redis.disconnect()
}
