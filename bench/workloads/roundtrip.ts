/**
 * Workload 3, round trip: `m` sequential submit-then-wait, one worker child per system; latency
 * percentiles per repetition, the table shows their medians.
 */
import { type SystemName, systems } from "../config.js"
import { perSystem } from "../report.js"
import { percentile, rotate, withTimeout } from "../util.js"
import { type Context, settle, withTargets, withWorkers } from "./common.js"

const waitTimeoutMs = 10_000

export const roundtrip = async (ctx: Context): Promise<void> => {
  const { roundTrips: m, reps, roundTripConcurrency, warmup } = ctx.options.sizes
  const ps = [50, 90, 99] as const
  const values = Object.fromEntries(ps.map((p) => [p, perSystem()]))
  await withTargets(ctx, "roundtrip", (targets) =>
    withWorkers(targets, 1, roundTripConcurrency, async () => {
      const trips = (system: SystemName, count: number) =>
        withTimeout(targets.get(system)!.roundTrips(count, waitTimeoutMs), 30_000 + count * 100, `${system}: ${count} round trips`)
      // Untimed trips first, as many as the other workloads' warm-up: a hundred left each system's producer and worker
      // partly unoptimised, and the first timed repetition measured the JIT as much as the queue.
      for (const system of systems) await trips(system, warmup)
      for (let rep = 0; rep < reps; rep++) {
        for (const system of rotate(systems, rep)) {
          await settle(ctx)
          const latencies = await trips(system, m)
          for (const p of ps) values[p]![system].push(percentile(latencies, p))
        }
      }
    }))
  for (const p of ps) {
    ctx.figures.push({ workload: "roundtrip", label: `round trip p${p} (${m} sequential)`, unit: "ms", better: "lower", values: values[p]! })
  }
  ctx.log("round trip: done")
}
