/**
 * Workloads 2 and 4, end to end: `n` no-op tasks submitted (1,000 in flight) while worker children run
 * them. Per concurrency, one pool of workers per system is started and then grown: 1 worker (the
 * end-to-end figure), then 2 and 4 (the scale figures, at the scale concurrency), so that no worker is
 * started twice; start-up is slow on 2 cores. The pools of all three systems stay up together (an idle
 * worker blocks on Redis and costs no CPU), so the systems alternate run by run.
 */
import { startChildren, stopChildren, type WorkerChild } from "../children.js"
import { type SystemName, systems, type WorkloadName } from "../config.js"
import { perSystem } from "../report.js"
import { rotate } from "../util.js"
import { type Context, runE2E, settle, withTargets } from "./common.js"

interface Step {
  /** Worker processes per system for this step. */
  readonly workers: number
  readonly figures: ReadonlyArray<{ readonly workload: WorkloadName; readonly label: string; readonly withCpu: boolean }>
}

const series = async (ctx: Context, concurrency: number, steps: ReadonlyArray<Step>): Promise<void> => {
  const { n, reps, warmup, inFlight } = ctx.options.sizes
  const runs: Array<unknown> = ((ctx.extra.e2eRuns as Array<unknown> | undefined) ??= [])
  await withTargets(ctx, "throughput", async (targets) => {
    const pools = new Map<SystemName, Array<WorkerChild>>(systems.map((s) => [s, []]))
    const all = () => [...pools.values()].flat()
    try {
      for (const step of steps) {
        const specs = systems.flatMap((system) => {
          const have = pools.get(system)!.length
          return Array.from({ length: step.workers - have }, (_, i) => ({
            system,
            spec: targets.get(system)!.workerSpec(concurrency, `worker-${system}#${have + i + 1}`)
          }))
        })
        const started = await startChildren(specs.map((s) => s.spec))
        specs.forEach((s, i) => pools.get(s.system)!.push(started[i]!))
        // New workers are cold: warm every pool before timing.
        for (const system of systems) {
          await runE2E(targets.get(system)!, pools.get(system)!, { n: warmup, inFlight, admin: ctx.admin })
        }
        const values = perSystem()
        const workerCpu = perSystem()
        const redisCpu = perSystem()
        const producerCpu = perSystem()
        const allCpu = perSystem()
        for (let rep = 0; rep < reps; rep++) {
          for (const system of rotate(systems, rep)) {
            await settle(ctx)
            const r = await runE2E(targets.get(system)!, pools.get(system)!, { n, inFlight, admin: ctx.admin })
            values[system].push(r.jobsPerSec)
            workerCpu[system].push(r.workerCpuMicrosPerTask)
            redisCpu[system].push(r.redisCpuMicrosPerTask)
            producerCpu[system].push(r.producerCpuMicrosPerTask)
            allCpu[system].push(r.workerCpuMicrosPerTask + r.redisCpuMicrosPerTask + r.producerCpuMicrosPerTask)
            runs.push({ concurrency, workers: step.workers, system, rep, n, ...r })
          }
        }
        for (const f of step.figures) {
          ctx.figures.push({ workload: f.workload, label: f.label, unit: "jobs/s", better: "higher", values })
          if (f.withCpu) {
            ctx.figures.push({ workload: f.workload, label: `  worker CPU per task, c${concurrency}`, unit: "µs", better: "lower", values: workerCpu })
            ctx.figures.push({ workload: f.workload, label: `  Redis CPU per task, c${concurrency}`, unit: "µs", better: "lower", values: redisCpu })
            ctx.figures.push({ workload: f.workload, label: `  producer CPU per task, c${concurrency}`, unit: "µs", better: "lower", values: producerCpu })
            // On a machine whose cores the three share, this bounds the throughput: cores ÷ CPU per task.
            ctx.figures.push({ workload: f.workload, label: `  all three, CPU per task, c${concurrency}`, unit: "µs", better: "lower", values: allCpu })
          }
        }
        ctx.log(`${step.workers} worker(s) per system at concurrency ${concurrency}: done`)
      }
    } finally {
      await stopChildren(all())
    }
  })
}

/** The end-to-end and scale workloads, whichever of the two were asked for, sharing worker pools. */
export const throughput = async (ctx: Context): Promise<void> => {
  const { concurrencies, scaleConcurrency, scaleWorkers } = ctx.options.sizes
  const withE2E = ctx.options.only.includes("e2e")
  const withScale = ctx.options.only.includes("scale")
  const levels = [...new Set([...(withE2E ? concurrencies : []), ...(withScale ? [scaleConcurrency] : [])])]
  for (const concurrency of levels) {
    const counts = [...new Set([1, ...(withScale && concurrency === scaleConcurrency ? scaleWorkers : [])])].sort((a, b) => a - b)
    const steps = counts.map((workers): Step => ({
      workers,
      figures: [
        ...(workers === 1 && withE2E && concurrencies.includes(concurrency)
          ? [{ workload: "e2e" as const, label: `end-to-end, 1 worker, concurrency ${concurrency}`, withCpu: true }]
          : []),
        ...(withScale && concurrency === scaleConcurrency && scaleWorkers.includes(workers)
          ? [{ workload: "scale" as const, label: `scale, ${workers} worker${workers > 1 ? "s" : ""} × concurrency ${concurrency}`, withCpu: false }]
          : [])
      ]
    })).filter((step) => step.figures.length > 0) // a pool still grows through a step it skips
    await series(ctx, concurrency, steps)
  }
}
