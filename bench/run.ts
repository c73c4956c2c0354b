/**
 * The benchmark: the same workloads through effect-taskiq, BullMQ and a raw ioredis Streams loop (the
 * ceiling), against the same Redis, alternating the systems run by run. Prints one table of medians and
 * ratios and writes bench/results.json. See bench/RESULTS.md for how to read it.
 *
 *   npm run bench                # full sizes, several minutes
 *   npm run bench -- --quick     # small sizes, under two minutes
 *   npm run bench -- --profile   # also a CPU profile of our worker child, summarised
 *
 * Every key the run creates starts with its run id and is deleted at the end (never FLUSHDB: the Redis
 * may be shared); every worker child is stopped, or killed by pid, whatever happens.
 */
import { killAllChildren } from "./children.js"
import { type Options, parseOptions, systemLabel, systems, type WorkloadName, workloads } from "./config.js"
import { describeMachine } from "./machine.js"
import { RedisAdmin } from "./redis-admin.js"
import { type Figure, renderTable, writeResults } from "./report.js"
import { errorMessage, median, withTimeout } from "./util.js"
import { backlog } from "./workloads/backlog.js"
import type { Context } from "./workloads/common.js"
import { throughput } from "./workloads/e2e.js"
import { enqueue } from "./workloads/enqueue.js"
import { footprint } from "./workloads/footprint.js"
import { profile } from "./workloads/profile.js"
import { roundtrip } from "./workloads/roundtrip.js"

// End-to-end and scale share their worker pools, so they are one step, run where the first of them is asked for.
const steps: Record<WorkloadName, (ctx: Context) => Promise<void>> = {
  enqueue,
  e2e: throughput,
  scale: throughput,
  backlog,
  roundtrip,
  footprint
}

const plan = (only: ReadonlyArray<WorkloadName>): Array<WorkloadName> =>
  only.filter((w, i) => !(w === "scale" && only.includes("e2e")) && only.indexOf(w) === i)

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`)

/** Deletes every key of the run; bounded, so that a dead Redis cannot keep us from exiting. */
const cleanUp = async (admin: RedisAdmin, options: Options): Promise<void> => {
  killAllChildren()
  const deleted = await withTimeout(admin.deletePrefix(options.runId), 30_000, "deleting the run's keys").catch((e) => {
    log(`could not delete the keys of ${options.runId}*: ${errorMessage(e)}`)
    return 0
  })
  if (deleted > 0) log(`deleted ${deleted} leftover keys of ${options.runId}`)
  await admin.close()
}

const main = async (): Promise<number> => {
  const options = parseOptions(process.argv.slice(2))
  const admin = await RedisAdmin.connect(options.url)
  let interrupted = false
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      if (interrupted) return
      interrupted = true
      log(`${signal}: stopping workers and deleting the run's keys`)
      cleanUp(admin, options).finally(() => process.exit(signal === "SIGINT" ? 130 : 143))
    })
  }
  const started = Date.now()
  const figures: Array<Figure> = []
  const extra: Record<string, unknown> = {}
  const failures: Array<string> = []
  try {
    const env = await describeMachine(admin)
    log(`effect-taskiq benchmark, ${options.mode} mode, run ${options.runId}`)
    log(`${env.machine.cpu}, ${env.machine.cores} cores, ${env.machine.memoryGiB} GiB; node ${env.versions.node}, ` +
      `redis ${env.versions.redis}, effect ${env.versions.effect}, bullmq ${env.versions.bullmq}, ioredis ${env.versions.ioredis}; commit ${env.versions.commit}`)
    log(`sizes: ${JSON.stringify(options.sizes)}`)
    if (options.prefetch > 0) log(`our worker reads ahead: maxPrefetch ${options.prefetch} (BullMQ and raw have no such setting)`)
    if (options.v8Pretenuring) log(`our worker keeps V8's allocation-site pretenuring on (taskiq worker --v8-pretenuring)`)
    const ctx: Context = { options, admin, figures, extra, log }
    // A failed workload is reported and the others still run: one broken figure should not hide the rest.
    for (const workload of plan(options.only)) {
      log(`${workload === "e2e" && options.only.includes("scale") ? "e2e and scale" : workload}…`)
      try {
        await steps[workload](ctx)
      } catch (e) {
        failures.push(`${workload}: ${errorMessage(e)}`)
        log(`${workload} FAILED: ${errorMessage(e)}`)
      }
    }
    if (options.profile) {
      try {
        await profile(ctx)
      } catch (e) {
        failures.push(`profile: ${errorMessage(e)}`)
        log(`profile FAILED: ${errorMessage(e)}`)
      }
    }
    const header = {
      ...env,
      mode: options.mode,
      runId: options.runId,
      startedAt: new Date(started).toISOString(),
      durationSeconds: Math.round((Date.now() - started) / 1000),
      sizes: options.sizes,
      prefetch: options.prefetch,
      v8Pretenuring: options.v8Pretenuring,
      systems: Object.fromEntries(systems.map((s) => [s, systemLabel[s]])),
      failures
    }
    // Table order is workload order, whatever order they ran in.
    figures.sort((a, b) => workloads.indexOf(a.workload) - workloads.indexOf(b.workload))
    writeResults(options.resultsFile, header, figures, extra)
    console.log(`\n${renderTable(figures)}\n`)
    console.log(`medians of the repetitions; ↑ higher is better, ↓ lower is better; ratios compare medians.`)
    log(`wrote ${options.resultsFile.pathname} (${header.durationSeconds} s)`)
    // Other work on the machine skews the timings; the end-to-end and backlog runs measured how much there was.
    const foreign = [...(extra.e2eRuns ?? []) as Array<unknown>, ...(extra.backlogRuns ?? []) as Array<unknown>]
      .map((r) => (r as { foreignCpuCores?: number }).foreignCpuCores ?? 0)
    const worst = Math.max(0, ...foreign)
    if (worst > 0.25) {
      log(`WARNING: other processes used up to ${worst.toFixed(2)} of ${env.machine.cores} cores during end-to-end and backlog runs ` +
        `(median ${median(foreign).toFixed(2)}): throughput figures are noisy; CPU per task is the steadier figure`)
    }
    for (const f of failures) log(`FAILED ${f}`)
    return failures.length === 0 ? 0 : 1
  } finally {
    if (!interrupted) await cleanUp(admin, options)
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.stack ?? e.message : e)
    killAllChildren()
    process.exit(1)
  }
)
