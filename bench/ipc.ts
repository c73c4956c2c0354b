/**
 * The messages between the harness and its worker children (Node IPC channel, JSON).
 */

/** What a worker child reports, periodically and on request. */
export interface WorkerStats {
  /** Resident set size, bytes. */
  readonly rss: number
  readonly heapUsed: number
  /** Tasks this child has finished since it started (warm-up included). */
  readonly done: number
  /** CPU time this process has used, user + system, µs (`process.cpuUsage()`). */
  readonly cpuMicros: number
}

export type ChildMessage =
  | { readonly type: "ready" }
  | { readonly type: "stats"; readonly stats: WorkerStats; readonly reply?: number }
  | { readonly type: "error"; readonly message: string }
  | { readonly type: "profiled"; readonly file: string }
  /** The answer to `pause` / `resume` with the same `reply`, once the worker has done it. */
  | { readonly type: "paused"; readonly reply: number }
  | { readonly type: "resumed"; readonly reply: number }

export type ParentMessage =
  /** `gc`: run a full garbage collection first (the child must run with `--expose-gc`), so heap size shows live data. */
  | { readonly type: "stats"; readonly reply: number; readonly gc?: boolean }
  | { readonly type: "stop" }
  /** Starts the V8 CPU profiler in the child (so start-up and warm-up stay out of the profile). */
  | { readonly type: "profile-start" }
  /** Stops it and writes the `.cpuprofile` to `file`; answered with `profiled`. */
  | { readonly type: "profile-stop"; readonly file: string }
  /**
   * Stop consuming, keeping the process (and its JIT) warm: answered with `paused` once the worker holds no
   * message; `resume` is answered with `resumed` once it consumes again. So a queue can be filled with no
   * worker reading it, and a warm worker then timed draining it.
   */
  | { readonly type: "pause"; readonly reply: number }
  | { readonly type: "resume"; readonly reply: number }

/** How often a child reports its stats unasked (the footprint workload samples RSS from these). */
export const statsIntervalMs = 200
