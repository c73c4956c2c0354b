/**
 * Benchmark settings: the command line, the sizes of each mode, the Redis URL, and the naming of the
 * run's keys (every key a run creates starts with its run id, so that it can be found and deleted).
 */
import { randomBytes } from "node:crypto"

/** The three systems measured side by side. `raw` is the ceiling: ioredis Streams, no framework. */
export type SystemName = "ours" | "bullmq" | "raw"
export const systems: ReadonlyArray<SystemName> = ["ours", "bullmq", "raw"]
export const systemLabel: Record<SystemName, string> = { ours: "effect-taskiq", bullmq: "BullMQ", raw: "raw ioredis" }

export type WorkloadName = "enqueue" | "e2e" | "scale" | "backlog" | "roundtrip" | "footprint"
// Also the order of the table's rows.
export const workloads: ReadonlyArray<WorkloadName> = ["enqueue", "e2e", "scale", "backlog", "roundtrip", "footprint"]

export interface Sizes {
  /** Repetitions of each timed figure; the table shows their median. */
  readonly reps: number
  /** Tasks per enqueue-only, end-to-end and backlog run. */
  readonly n: number
  /** Untimed tasks run first through each fresh worker / producer, so the JIT is warm when timing starts. */
  readonly warmup: number
  /** Sequential round trips per repetition. */
  readonly roundTrips: number
  /** Tasks of the long footprint run. */
  readonly footprintN: number
  /** Tasks in flight for the "concurrent" enqueue mode and for the producer of every end-to-end run. */
  readonly inFlight: number
  /** Tasks per batch for the "batched" enqueue mode. */
  readonly batch: number
  /** Worker concurrency of the end-to-end and backlog runs. */
  readonly concurrencies: ReadonlyArray<number>
  /** Worker processes of the scale runs, each with `scaleConcurrency`. */
  readonly scaleWorkers: ReadonlyArray<number>
  readonly scaleConcurrency: number
  /** Worker concurrency of the round-trip and footprint runs. */
  readonly roundTripConcurrency: number
  readonly footprintConcurrency: number
  /** Before each timed run, wait up to this long for other processes to leave the CPU (0: never wait). */
  readonly quietWaitMs: number
  /** ... but no more than this in total over the whole run. */
  readonly quietBudgetMs: number
}

// Five repetitions: on a shared 2-core machine single runs swing by ±30 %; the median of five holds.
const full: Sizes = {
  reps: 5,
  n: 20_000,
  warmup: 2_000,
  roundTrips: 2_000,
  footprintN: 200_000,
  inFlight: 1_000,
  batch: 1_000,
  concurrencies: [16, 128],
  scaleWorkers: [1, 2, 4],
  scaleConcurrency: 16,
  roundTripConcurrency: 16,
  footprintConcurrency: 128,
  quietWaitMs: 20_000,
  quietBudgetMs: 300_000
}

// Quick mode must finish within two minutes on a 2-core machine, worker start-ups included, even while
// other work takes a core: small runs, and scale only to 2 workers (starting 4 workers per system is
// most of the time of that step). Its figures are indicative; the full run is the measurement.
const quick: Sizes = {
  ...full,
  reps: 3,
  n: 1_000,
  warmup: 200,
  roundTrips: 200,
  footprintN: 5_000,
  scaleWorkers: [1, 2],
  // It has a time limit to keep: it only records how busy the machine was, never waits for quiet.
  quietWaitMs: 0,
  quietBudgetMs: 0
}

export interface Options {
  readonly mode: "quick" | "full"
  readonly sizes: Sizes
  readonly only: ReadonlyArray<WorkloadName>
  /** Also take a CPU profile of our worker child (V8 profiler via node:inspector) and summarise it. */
  readonly profile: boolean
  /** Our worker's `maxPrefetch` (default 0, as the library's): BullMQ and raw have no such setting. */
  readonly prefetch: number
  /** Our worker keeps V8's allocation-site pretenuring on (`taskiq worker --v8-pretenuring`); off by default, as the command runs it. */
  readonly v8Pretenuring: boolean
  readonly url: string
  readonly runId: string
  readonly resultsFile: URL
}

const usage = `usage: npm run bench -- [--quick] [--profile] [--prefetch=N] [--v8-pretenuring] [--only=${workloads.join(",")}] [--reps=N] [--n=N] [--warmup=N]
  --quick     small sizes (N=${quick.n}, ${quick.roundTrips} round trips, footprint ${quick.footprintN}, scale to 2 workers); under 2 minutes
  --profile   also CPU-profile our worker child (as node --cpu-prof would) and print where its time goes
  --prefetch  our worker's maxPrefetch (default 0, the library's default): messages read ahead of free slots
  --v8-pretenuring  our worker keeps V8's allocation-site pretenuring on, as \`taskiq worker --v8-pretenuring\` does
              (by default it is turned off in our worker, as the worker command does; BullMQ and raw run with Node's defaults)
  --only      run only these workloads (backlog: a paused worker per system, its queue filled with N tasks, timed draining it)
  --reps/--n  override the repetitions / tasks per run (N: enqueue, end to end, backlog)
  --warmup    override the untimed tasks each fresh worker and producer runs first (every system alike)
Redis: TASKIQ_REDIS_URL (default redis://127.0.0.1:6379/0), loopback only unless --allow-remote.`

const isLoopback = (url: string): boolean => {
  try {
    const host = new URL(url).hostname
    return host === "127.0.0.1" || host === "localhost" || host === "[::1]" || host === "::1"
  } catch {
    return false
  }
}

const positiveInt = (flag: string, value: string): number => {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer, got "${value}"\n${usage}`)
  return n
}

/** Parses the command line; throws with the usage text on anything unknown. */
export const parseOptions = (argv: ReadonlyArray<string>): Options => {
  let mode: Options["mode"] = "full"
  let profile = false
  let allowRemote = false
  let only: ReadonlyArray<WorkloadName> = workloads
  let reps: number | undefined
  let n: number | undefined
  let warmup: number | undefined
  let prefetch = 0
  let v8Pretenuring = false
  for (const arg of argv) {
    const [flag, value = ""] = arg.split("=", 2) as [string, string | undefined]
    if (flag === "--quick") mode = "quick"
    else if (flag === "--profile") profile = true
    else if (flag === "--allow-remote") allowRemote = true
    else if (flag === "--reps") reps = positiveInt(flag, value)
    else if (flag === "--n") n = positiveInt(flag, value)
    else if (flag === "--warmup") warmup = positiveInt(flag, value)
    else if (flag === "--v8-pretenuring") v8Pretenuring = true
    else if (flag === "--prefetch") prefetch = value === "0" ? 0 : positiveInt(flag, value)
    else if (flag === "--only") {
      const names = value.split(",").filter(Boolean)
      const unknown = names.filter((w) => !workloads.includes(w as WorkloadName))
      if (names.length === 0 || unknown.length > 0) throw new Error(`unknown workload(s) "${unknown.join(",")}"\n${usage}`)
      only = names as Array<WorkloadName>
    } else if (flag === "--help" || flag === "-h") {
      console.log(usage)
      process.exit(0)
    } else throw new Error(`unknown argument "${arg}"\n${usage}`)
  }
  const base = mode === "quick" ? quick : full
  const sizes: Sizes = { ...base, reps: reps ?? base.reps, n: n ?? base.n, warmup: warmup ?? base.warmup }
  const url = process.env.TASKIQ_REDIS_URL || "redis://127.0.0.1:6379/0"
  // A benchmark across a network measures the network; and this harness must not talk to other hosts by accident.
  if (!allowRemote && !isLoopback(url)) {
    throw new Error(`TASKIQ_REDIS_URL points to a non-loopback host; pass --allow-remote to benchmark it anyway`)
  }
  return {
    mode,
    sizes,
    only,
    profile,
    prefetch,
    v8Pretenuring,
    url,
    runId: `tqbench-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`,
    resultsFile: new URL("./results.json", import.meta.url)
  }
}

let counter = 0

/**
 * A fresh key root for one queue of one system: `<runId>-<nnn>-<system>`. The fixed-width counter makes
 * sure no root is a prefix of another, so deleting `<root>*` never touches a neighbour's keys.
 */
export const newRoot = (runId: string, system: SystemName): string =>
  `${runId}-${String(++counter).padStart(3, "0")}-${system}`
