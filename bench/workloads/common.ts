/**
 * What every workload shares: the context, setting up one queue per system (and always tearing it down,
 * keys included), worker children per queue, and one timed end-to-end run.
 */
import { startChildren, stopChildren, type WorkerChild } from "../children.js"
import { newRoot, type Options, type SystemName, systems } from "../config.js"
import { machineBusyMicros, ownCpuMicros, waitForQuiet } from "../machine-cpu.js"
import type { RedisAdmin } from "../redis-admin.js"
import type { Figure } from "../report.js"
import { makeTarget, type Target, type TargetOptions } from "../systems/index.js"
import { pollUntil, sleep, withTimeout } from "../util.js"

export interface Context {
  readonly options: Options
  readonly admin: RedisAdmin
  readonly figures: Array<Figure>
  /** Anything a workload wants in results.json besides figures. */
  readonly extra: Record<string, unknown>
  readonly log: (line: string) => void
}

let quietSpentMs = 0

/** Call before every timed run: waits (within the run's budget) until no other process is using the CPU. */
export const settle = async (ctx: Context): Promise<void> => {
  const { quietWaitMs, quietBudgetMs } = ctx.options.sizes
  const allowed = Math.min(quietWaitMs, quietBudgetMs - quietSpentMs)
  if (allowed <= 0) return
  const waited = await waitForQuiet(allowed)
  quietSpentMs += waited
  if (waited >= 1_000) ctx.log(`  waited ${(waited / 1000).toFixed(0)} s for other processes to leave the CPU`)
  ctx.extra.quietWaitSeconds = Math.round(quietSpentMs / 1000)
}

/** One queue per system for `use`; closed, and every key under its root deleted, whatever happens. */
export const withTargets = async <A>(
  ctx: Context,
  mode: TargetOptions["mode"],
  use: (targets: ReadonlyMap<SystemName, Target>) => Promise<A>,
  only: ReadonlyArray<SystemName> = systems
): Promise<A> => {
  const targets = new Map<SystemName, Target>()
  try {
    for (const system of only) {
      targets.set(system, await makeTarget(system, { url: ctx.options.url, root: newRoot(ctx.options.runId, system), mode, prefetch: ctx.options.prefetch, v8Pretenuring: ctx.options.v8Pretenuring }))
    }
    return await use(targets)
  } finally {
    for (const target of targets.values()) {
      await target.close().catch((e) => ctx.log(`closing ${target.system}: ${e}`))
      await ctx.admin.deletePrefix(target.root)
    }
  }
}

/** `count` worker children per target, each with `concurrency`; always stopped (or killed) afterwards. */
export const withWorkers = async <A>(
  targets: ReadonlyMap<SystemName, Target>,
  count: number,
  concurrency: number,
  use: (workers: ReadonlyMap<SystemName, ReadonlyArray<WorkerChild>>) => Promise<A>,
  nodeArgs?: ReadonlyArray<string>
): Promise<A> => {
  const specs = [...targets.values()].flatMap((t) =>
    Array.from({ length: count }, (_, i) => ({ system: t.system, spec: t.workerSpec(concurrency, `worker-${t.system}#${i + 1}`, nodeArgs) }))
  )
  const children = await startChildren(specs.map((s) => s.spec))
  try {
    const bySystem = new Map<SystemName, Array<WorkerChild>>()
    specs.forEach((s, i) => bySystem.set(s.system, [...(bySystem.get(s.system) ?? []), children[i]!]))
    return await use(bySystem)
  } finally {
    await stopChildren(children)
  }
}

/** A generous bound for draining `n` tasks: a hung run fails with a message instead of hanging. */
export const drainTimeoutMs = (n: number): number => 30_000 + n * 2

export interface E2EResult {
  readonly jobsPerSec: number
  readonly enqueueMs: number
  readonly totalMs: number
  /** CPU the worker children used per task, µs: where a framework's cost shows on a no-op. */
  readonly workerCpuMicrosPerTask: number
  /**
   * CPU the harness used per task, µs: the producer submitting the tasks (each system's own client), plus the
   * harness's polling for the drain, alike for every system.
   */
  readonly producerCpuMicrosPerTask: number
  /** CPU Redis used per task, µs, and its calls per task by command (the harness's polling included). */
  readonly redisCpuMicrosPerTask: number
  readonly redisCallsPerTask: Record<string, number>
  /**
   * Cores' worth of CPU used meanwhile by processes other than the harness, these workers and Redis
   * (other systems' idle workers included): the noise in this run's timing. Undefined off Linux.
   */
  readonly foreignCpuCores: number | undefined
}

const statsOf = async (workers: ReadonlyArray<WorkerChild>) => {
  const all = await Promise.all(workers.map((w) => w.stats()))
  return { done: all.reduce((sum, s) => sum + s.done, 0), cpuMicros: all.reduce((sum, s) => sum + s.cpuMicros, 0) }
}

/**
 * After a drained run: the workers report `n` more tasks done than `before`, and (ours, raw) `n` results are
 * stored, which are then deleted unless `keepResults`. Returns the workers' stats once they have counted all.
 */
export const confirmDone = async (
  target: Target,
  workers: ReadonlyArray<WorkerChild>,
  before: { readonly done: number },
  options: { readonly n: number; readonly admin: RedisAdmin; readonly keepResults?: boolean | undefined }
): Promise<{ done: number; cpuMicros: number }> => {
  const { n, admin } = options
  const check = () => workers.forEach((w) => w.check())
  // BullMQ counts on its `completed` event, which can trail the job's removal by a round trip.
  await pollUntil(`${target.system}: workers to report ${n} tasks done`, async () => (await statsOf(workers)).done - before.done >= n, {
    timeoutMs: 10_000,
    everyMs: 20,
    check
  })
  const after = await statsOf(workers)
  const done = after.done - before.done
  if (done !== n) throw new Error(`${target.system}: workers report ${done} tasks done, expected ${n}`)
  if (target.resultPrefix !== undefined) {
    const stored = await admin.countKeys(`${target.resultPrefix}:`)
    if (stored !== n) throw new Error(`${target.system}: ${stored} results stored, expected ${n}`)
    // Same Redis state for every repetition: the next run starts without these results.
    if (options.keepResults !== true) await admin.deletePrefix(`${target.resultPrefix}:`)
  }
  await sleep(100) // let the worker settle (late acks, GC) before whatever runs next
  return after
}

/**
 * The CPU of a timed span: the workers' (over IPC), Redis's and the machine's. `end()` is called when the queue is
 * seen drained; it gives what the span cost and how many cores other processes used meanwhile (undefined off Linux).
 */
export const measureSpan = async (workers: ReadonlyArray<WorkerChild>, admin: RedisAdmin) => {
  const before = await statsOf(workers)
  const redisBefore = await admin.serverCounters()
  const machineBefore = machineBusyMicros()
  const harnessBefore = ownCpuMicros()
  const started = performance.now()
  return {
    before,
    started,
    end: async () => {
      const redisAfter = await admin.serverCounters()
      const machineAfter = machineBusyMicros()
      const harnessAfter = ownCpuMicros()
      const sampled = performance.now() - started
      const workersAtDrain = await statsOf(workers)
      const redisCpuMicros = redisAfter.cpuMicros - redisBefore.cpuMicros
      const ours = (harnessAfter - harnessBefore) + (workersAtDrain.cpuMicros - before.cpuMicros) + redisCpuMicros
      const calls: Record<string, number> = {}
      for (const [command, count] of Object.entries(redisAfter.calls)) {
        const delta = count - (redisBefore.calls[command] ?? 0)
        if (delta > 0) calls[command] = delta
      }
      return {
        harnessCpuMicros: harnessAfter - harnessBefore,
        redisCpuMicros,
        redisCalls: calls,
        foreignCpuCores: machineBefore === undefined || machineAfter === undefined
          ? undefined
          : Math.max(0, (machineAfter - machineBefore - ours) / 1000 / sampled)
      }
    }
  }
}

/**
 * One end-to-end run: `n` tasks submitted with `inFlight` outstanding while the workers run them; timed
 * from the first submission until the queue is seen empty (polled every 2 ms, so ±2 ms on runs of
 * seconds). Empty means done: our worker and the raw loop delete a stream entry only after its result was
 * saved (ack policy `when_saved`), BullMQ removes a job from `active` in the script that completes it.
 * Then it checks: the workers report `n` more tasks done, and (ours, raw) `n` results are stored.
 */
export const runE2E = async (
  target: Target,
  workers: ReadonlyArray<WorkerChild>,
  options: { readonly n: number; readonly inFlight: number; readonly admin: RedisAdmin; readonly keepResults?: boolean }
): Promise<E2EResult> => {
  const { n, admin } = options
  const check = () => workers.forEach((w) => w.check())
  const span = await measureSpan(workers, admin)
  const { before, started } = span
  await withTimeout(target.concurrent(n, options.inFlight), drainTimeoutMs(n), `${target.system}: submitting ${n} tasks`)
  const enqueued = performance.now()
  const drained = await pollUntil(`${target.system}: ${n} tasks to be done`, async () => (await target.outstanding()) === 0, {
    timeoutMs: drainTimeoutMs(n),
    everyMs: 2,
    check
  })
  const cost = await span.end()
  const after = await confirmDone(target, workers, before, { n, admin, keepResults: options.keepResults })
  const redisCallsPerTask: Record<string, number> = {}
  for (const [command, calls] of Object.entries(cost.redisCalls)) redisCallsPerTask[command] = Math.round((calls / n) * 1000) / 1000
  return {
    jobsPerSec: n / ((drained - started) / 1000),
    enqueueMs: enqueued - started,
    totalMs: drained - started,
    // The worker's CPU is read a little after the drain, the time it takes to notice; idle costs ~nothing.
    workerCpuMicrosPerTask: (after.cpuMicros - before.cpuMicros) / n,
    producerCpuMicrosPerTask: cost.harnessCpuMicros / n,
    redisCpuMicrosPerTask: cost.redisCpuMicros / n,
    redisCallsPerTask,
    foreignCpuCores: cost.foreignCpuCores
  }
}
