/**
 * `--profile`: a CPU profile of our worker child through one end-to-end run at concurrency 128, then a
 * summary of where its CPU time went. Separate from the measured runs, which profiling would slow. The
 * child profiles itself through `node:inspector` (what `node --cpu-prof` does), started after the warm-up
 * and stopped after the run, so start-up, module loading and tsx's loader thread stay out of it. The
 * .cpuprofile lands in bench/profiles/ (gitignored) for a closer look in Chrome DevTools.
 */
import { mkdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { renderSummary, summarise } from "../profile-summary.js"
import { type Context, runE2E, withTargets, withWorkers } from "./common.js"

export const profile = async (ctx: Context): Promise<void> => {
  const { n, warmup, inFlight } = ctx.options.sizes
  const size = Math.max(n, 20_000)
  const dir = fileURLToPath(new URL("../profiles/", import.meta.url))
  mkdirSync(dir, { recursive: true })
  const file = `${dir}worker-ours-${ctx.options.runId}.cpuprofile`
  await withTargets(ctx, "throughput", (targets) =>
    withWorkers(targets, 1, 128, async (children) => {
      const target = targets.get("ours")!
      const workers = children.get("ours")!
      await runE2E(target, workers, { n: warmup, inFlight, admin: ctx.admin })
      workers[0]!.startProfile()
      await runE2E(target, workers, { n: size, inFlight, admin: ctx.admin })
      await workers[0]!.stopProfile(file)
    }), ["ours"])
  const summary = summarise(file)
  ctx.extra.profile = { ...summary, tasks: size, concurrency: 128 }
  ctx.log(renderSummary(summary))
}
