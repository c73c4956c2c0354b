/**
 * Workload 6, backlog: how fast one warm worker drains a queue that already holds `n` no-op tasks, as
 * after an outage or a burst. End to end, the producer competes with the worker for the same cores and
 * its pace bounds the figure; here only Redis and the harness's polling of the queue's length do. The
 * queue is filled while the worker is paused, not stopped: a fresh process would time its JIT warm-up as
 * much as the queue. The clock starts when the harness asks it to resume (whatever a worker does to start
 * consuming again is part of catching up) and stops when the queue is seen empty, polled every 2 ms.
 */
import type { WorkerChild } from "../children.js"
import { systems } from "../config.js"
import type { RedisAdmin } from "../redis-admin.js"
import { perSystem } from "../report.js"
import type { Target } from "../systems/index.js"
import { pollUntil, rotate, withTimeout } from "../util.js"
import { confirmDone, type Context, drainTimeoutMs, measureSpan, runE2E, settle, withTargets, withWorkers } from "./common.js"

export interface BacklogResult {
  readonly jobsPerSec: number
  /** Untimed: from sending `pause` to the workers' acknowledgement (a worker that cannot pause cleanly shows here). */
  readonly pauseMs: number
  /** Untimed: filling the queue while the workers were paused. */
  readonly fillMs: number
  /** From sending `resume` to the workers' acknowledgement (inside the timed span). */
  readonly resumeMs: number
  readonly totalMs: number
  readonly workerCpuMicrosPerTask: number
  readonly redisCpuMicrosPerTask: number
  /** As in the end-to-end runs: other processes' CPU meanwhile, in cores. Undefined off Linux. */
  readonly foreignCpuCores: number | undefined
}

/** One backlog run: pause the workers, fill the queue with `n` tasks, resume them, time the drain. */
export const runBacklog = async (
  target: Target,
  workers: ReadonlyArray<WorkerChild>,
  options: { readonly n: number; readonly batch: number; readonly admin: RedisAdmin }
): Promise<BacklogResult> => {
  const { n, batch, admin } = options
  const what = `${target.system}: a backlog of ${n}`
  const check = () => workers.forEach((w) => w.check())
  // A worker that failed to resume must not leave the next run (or the harness's stop) a paused one.
  let paused = false
  try {
    const pausing = performance.now()
    await Promise.all(workers.map((w) => w.pause()))
    paused = true
    const filling = performance.now()
    await withTimeout(target.batched(n, batch), drainTimeoutMs(n), `${what}: filling the queue`)
    await pollUntil(`${what}: all tasks in the queue`, async () => {
      const queued = await target.outstanding()
      // Anything more is left from an earlier run, or a paused worker that was not: the timing would be wrong.
      if (queued > n) throw new Error(`${what}: ${queued} tasks queued, expected ${n}`)
      return queued === n
    }, { timeoutMs: 10_000, everyMs: 2, check })
    const fillMs = performance.now() - filling
    // Measured after the pause and the fill: what a pause costs is not catching up.
    const span = await measureSpan(workers, admin)
    const { before, started } = span
    await Promise.all(workers.map((w) => w.resume()))
    paused = false
    const resumed = performance.now()
    const drained = await pollUntil(`${what} to be drained`, async () => (await target.outstanding()) === 0, {
      timeoutMs: drainTimeoutMs(n),
      everyMs: 2,
      check
    })
    const cost = await span.end()
    const after = await confirmDone(target, workers, before, { n, admin })
    return {
      jobsPerSec: n / ((drained - started) / 1000),
      pauseMs: filling - pausing,
      fillMs,
      resumeMs: resumed - started,
      totalMs: drained - started,
      workerCpuMicrosPerTask: (after.cpuMicros - before.cpuMicros) / n,
      redisCpuMicrosPerTask: cost.redisCpuMicros / n,
      foreignCpuCores: cost.foreignCpuCores
    }
  } finally {
    if (paused) await Promise.allSettled(workers.map((w) => w.resume()))
  }
}

export const backlog = async (ctx: Context): Promise<void> => {
  const { n, reps, warmup, inFlight, batch, concurrencies } = ctx.options.sizes
  const runs: Array<unknown> = ((ctx.extra.backlogRuns as Array<unknown> | undefined) ??= [])
  for (const concurrency of concurrencies) {
    const values = perSystem()
    const workerCpu = perSystem()
    // One worker per system, all up together (an idle worker blocks on Redis and costs no CPU), so the
    // systems alternate run by run as end to end.
    await withTargets(ctx, "throughput", (targets) =>
      withWorkers(targets, 1, concurrency, async (children) => {
        // The same warm-up as end to end (it also leaves each queue empty with its consumer group in place), then
        // an untimed backlog: draining a full queue takes paths the end-to-end warm-up does not (the first timed
        // repetition was the slowest for every system without it).
        for (const system of systems) {
          await runE2E(targets.get(system)!, children.get(system)!, { n: warmup, inFlight, admin: ctx.admin })
          await runBacklog(targets.get(system)!, children.get(system)!, { n: warmup, batch, admin: ctx.admin })
        }
        for (let rep = 0; rep < reps; rep++) {
          for (const system of rotate(systems, rep)) {
            await settle(ctx)
            const r = await runBacklog(targets.get(system)!, children.get(system)!, { n, batch, admin: ctx.admin })
            values[system].push(r.jobsPerSec)
            workerCpu[system].push(r.workerCpuMicrosPerTask)
            runs.push({ concurrency, system, rep, n, ...r })
          }
        }
      }))
    ctx.figures.push({ workload: "backlog", label: `backlog drain, 1 worker, concurrency ${concurrency}`, unit: "jobs/s", better: "higher", values })
    ctx.figures.push({ workload: "backlog", label: `  worker CPU per task, c${concurrency}`, unit: "µs", better: "lower", values: workerCpu })
    ctx.log(`backlog at concurrency ${concurrency}: done`)
  }
}
