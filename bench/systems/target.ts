/**
 * What the harness needs from each system, producer side: the same workloads, each written the way that
 * system is meant to be used, over a queue whose every key starts with `root`.
 */
import type { ChildSpec } from "../children.js"
import type { SystemName } from "../config.js"

export interface TargetOptions {
  readonly url: string
  /** Every key of this queue starts with it. */
  readonly root: string
  /**
   * `roundtrip` queues are set up for waiting on single results: BullMQ keeps finished jobs (with
   * `removeOnComplete`, `waitUntilFinished` can find the job already gone and reject), and the raw
   * worker also pushes each result to a list the producer blocks on.
   */
  readonly mode: "throughput" | "roundtrip"
  /** Our worker's `maxPrefetch`; the other systems ignore it. */
  readonly prefetch: number
  /** Whether our worker keeps V8's allocation-site pretenuring; the other systems ignore it. */
  readonly v8Pretenuring: boolean
}

export interface Target {
  readonly system: SystemName
  readonly root: string
  /** `n` tasks, each submission awaited before the next. */
  readonly sequential: (n: number) => Promise<void>
  /** `n` tasks with `inFlight` submissions outstanding at any time. */
  readonly concurrent: (n: number, inFlight: number) => Promise<void>
  /** `n` tasks in batches of `batch`, one batch after another. */
  readonly batched: (n: number, batch: number) => Promise<void>
  /**
   * Tasks submitted and not yet finished: the stream length for ours and raw (an entry is deleted only
   * after its result was saved), waiting + active + delayed jobs for BullMQ.
   */
  readonly outstanding: () => Promise<number>
  /** `m` sequential submit-then-wait-for-the-result; the latency of each, ms. */
  readonly roundTrips: (m: number, timeoutMs: number) => Promise<Array<number>>
  /** Where results are stored, when they are kept (not for BullMQ with `removeOnComplete`). */
  readonly resultPrefix: string | undefined
  /** A worker child consuming this queue. */
  readonly workerSpec: (concurrency: number, label: string, nodeArgs?: ReadonlyArray<string>) => ChildSpec
  readonly close: () => Promise<void>
}

/** The result TTL every system uses where it stores results: taskiq's default hour. */
export const resultTtlMs = 3_600_000
