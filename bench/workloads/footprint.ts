/**
 * Workload 5, footprint: one long end-to-end run per system (one worker child), then what it left behind
 * in Redis (keys under the queue's root, their `MEMORY USAGE`, the growth of `used_memory`, the queue's
 * length) and the worker's memory: RSS right after start, at a quarter of the run, at the end, and its
 * peak (sampled every 200 ms); and the heap after a forced full GC at the same points, which is what
 * tells a leak (live data growing with tasks done) from a heap that is merely large. One run per system:
 * these are sizes, not timings.
 */
import { type SystemName, systems } from "../config.js"
import type { WorkerStats } from "../ipc.js"
import { type Context, runE2E, settle, withTargets, withWorkers } from "./common.js"

const mb = (bytes: number) => bytes / 1024 / 1024

export const footprint = async (ctx: Context): Promise<void> => {
  const { footprintN: n, footprintConcurrency: concurrency, inFlight } = ctx.options.sizes
  const checkpoint = Math.round(n / 4)
  const at = (count: number) => count.toLocaleString("en-US")
  const rows = new Map<string, { unit: string; values: Partial<Record<SystemName, Array<number>>> }>()
  const record = (label: string, unit: string, system: SystemName, value: number) => {
    const row = rows.get(label) ?? { unit, values: {} }
    row.values[system] = [value]
    rows.set(label, row)
  }

  for (const system of systems) {
    await withTargets(ctx, "throughput", (targets) =>
      withWorkers(targets, 1, concurrency, async (children) => {
        const target = targets.get(system)!
        const worker = children.get(system)![0]!
        const start = await worker.stats({ gc: true })
        let rssAtCheckpoint: number | undefined
        let heapAtCheckpoint: Promise<WorkerStats | undefined> | undefined
        const unsubscribe = worker.onStats((s) => {
          if (rssAtCheckpoint === undefined && s.done - start.done >= checkpoint) {
            rssAtCheckpoint = s.rss
            // Caught here: it may fail before it is awaited (a dead worker fails the run anyway).
            heapAtCheckpoint = worker.stats({ gc: true }).catch(() => undefined)
          }
        })
        await settle(ctx)
        const memoryBefore = await ctx.admin.usedMemory()
        const r = await runE2E(target, [worker], { n, inFlight, admin: ctx.admin, keepResults: true })
        unsubscribe()
        const end = await worker.stats()
        const endAfterGc = await worker.stats({ gc: true })
        const keys = await ctx.admin.keys(target.root)
        record(`footprint: ${at(n)} tasks end to end, c${concurrency}`, "jobs/s", system, r.jobsPerSec)
        record("footprint: worker start-up (spawn to ready)", "ms", system, worker.startupMs ?? Number.NaN)
        record("footprint: worker RSS after start", "MB", system, mb(start.rss))
        record(`footprint: worker RSS at ${at(checkpoint)} tasks`, "MB", system, mb(rssAtCheckpoint ?? Number.NaN))
        record(`footprint: worker RSS at ${at(n)} tasks`, "MB", system, mb(end.rss))
        record("footprint: worker peak RSS", "MB", system, mb(Math.max(worker.peakRss, end.rss)))
        record("footprint: worker heap after GC, at start", "MB", system, mb(start.heapUsed))
        record(`footprint: worker heap after GC, at ${at(checkpoint)}`, "MB", system, mb((await heapAtCheckpoint)?.heapUsed ?? Number.NaN))
        record(`footprint: worker heap after GC, at ${at(n)}`, "MB", system, mb(endAfterGc.heapUsed))
        record("footprint: Redis keys left (results, queue)", "keys", system, keys.length)
        record("footprint: MEMORY USAGE of those keys", "MB", system, mb(await ctx.admin.memoryUsage(keys)))
        record("footprint: used_memory growth", "MB", system, mb((await ctx.admin.usedMemory()) - memoryBefore))
        record("footprint: queue length after (stream / jobs)", "entries", system, await target.outstanding())
      }, ["--expose-gc"]), [system])
    ctx.log(`footprint ${system}: done`)
  }
  for (const [label, row] of rows) {
    ctx.figures.push({
      workload: "footprint",
      label,
      unit: row.unit,
      better: row.unit === "jobs/s" ? "higher" : "lower",
      values: row.values
    })
  }
}
