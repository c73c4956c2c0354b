/**
 * Small helpers shared by the harness: bounded waits, a polling loop, a promise pool, statistics.
 */

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Rejects with a message naming `what` when `promise` has not settled after `ms`: nothing may hang. */
export const withTimeout = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Calls `probe` until it returns true, every `everyMs`; `check` runs before each probe and throws to abort
 * early (a worker child died). Resolves with the time the condition was first seen true.
 */
export const pollUntil = async (
  what: string,
  probe: () => Promise<boolean>,
  options: { readonly timeoutMs: number; readonly everyMs: number; readonly check?: () => void }
): Promise<number> => {
  const deadline = performance.now() + options.timeoutMs
  for (;;) {
    options.check?.()
    if (await withTimeout(probe(), 10_000, `a probe of: ${what}`)) return performance.now()
    if (performance.now() > deadline) throw new Error(`timed out after ${options.timeoutMs} ms: ${what}`)
    await sleep(options.everyMs)
  }
}

/** Runs `task` `n` times with at most `lanes` calls outstanding: a sliding window, not waves. */
export const inLanes = async (n: number, lanes: number, task: () => Promise<unknown>): Promise<void> => {
  let started = 0
  const lane = async () => {
    while (started < n) {
      started++
      await task()
    }
  }
  await Promise.all(Array.from({ length: Math.min(lanes, n) }, lane))
}

/** Sizes of consecutive batches covering `n`. */
export const batches = (n: number, size: number): Array<number> =>
  Array.from({ length: Math.ceil(n / size) }, (_, i) => Math.min(size, n - i * size))

export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Nearest-rank percentile (p in 0..100) of the samples. */
export const percentile = (xs: ReadonlyArray<number>, p: number): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

/** `order` rotated by `k`, so that no system always runs first (or right after another one). */
export const rotate = <A>(order: ReadonlyArray<A>, k: number): Array<A> =>
  order.map((_, i) => order[(i + k) % order.length]!)

export const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))
