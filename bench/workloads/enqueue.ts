/**
 * Workload 1, enqueue only: `n` no-op tasks submitted with no worker running, in three modes. Each
 * repetition gets a fresh queue (and producer), so every run starts from an empty one.
 */
import { systems } from "../config.js"
import { perSystem } from "../report.js"
import type { Target } from "../systems/index.js"
import { rotate, withTimeout } from "../util.js"
import { type Context, drainTimeoutMs, settle, withTargets } from "./common.js"

export const enqueue = async (ctx: Context): Promise<void> => {
  const { n, reps, warmup, inFlight, batch } = ctx.options.sizes
  const modes: ReadonlyArray<{ readonly label: string; readonly run: (t: Target, n: number) => Promise<void> }> = [
    { label: "enqueue, one at a time (awaited)", run: (t, n) => t.sequential(n) },
    { label: `enqueue, concurrent (${inFlight} in flight)`, run: (t, n) => t.concurrent(n, inFlight) },
    { label: `enqueue, batched (${batch} a batch)`, run: (t, n) => t.batched(n, batch) }
  ]
  for (const mode of modes) {
    const values = perSystem()
    // Repetition -1 is the untimed warm-up.
    for (let rep = -1; rep < reps; rep++) {
      for (const system of rotate(systems, rep + 1)) {
        const size = rep < 0 ? warmup : n
        const rate = await withTargets(ctx, "throughput", async (targets) => {
          if (rep >= 0) await settle(ctx)
          const started = performance.now()
          await withTimeout(mode.run(targets.get(system)!, size), drainTimeoutMs(size), `${system}: ${mode.label}`)
          return size / ((performance.now() - started) / 1000)
        }, [system])
        if (rep >= 0) values[system].push(rate)
      }
    }
    ctx.figures.push({ workload: "enqueue", label: mode.label, unit: "jobs/s", better: "higher", values })
    ctx.log(`${mode.label}: done`)
  }
}
