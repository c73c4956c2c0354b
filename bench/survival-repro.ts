/**
 * A minimal reproduction of the young-generation survival described in RESULTS.md ("Allocation and the garbage
 * collector"): two fibers hand a number back and forth through a waiter list, the consumer waiting in an
 * `Effect.async`. Here V8's allocation-site pretenuring moves the waits' objects straight to the old generation,
 * where, dead at once, they keep the young objects they point to alive through every scavenge: ≈ 1 MB survives
 * each one and is promoted (pauses of 4–6 ms here). Compare the `promoted=` and `pause=` of the `gc=s` lines:
 *   node --trace-gc-nvp --import tsx bench/survival-repro.ts | grep gc=s | tail -3
 *   node --trace-gc-nvp --no-allocation-site-pretenuring --import tsx bench/survival-repro.ts | grep gc=s | tail -3
 * Measured: ≈ 1,051 KB promoted per scavenge in 7 runs of 7 with V8's default; nothing in 3 of 3 without
 * pretenuring. Whether V8 pretenures depends on what the process did before (the effect-taskiq import below; and the
 * `none` argument, an async without a canceler, promoted nothing in 6 runs of 7).
 */
import * as Effect from "effect/Effect"
import "effect-taskiq"

const withCanceler = process.argv[2] !== "none"
const n = 200_000
let waiters: Array<() => void> = []
const queue: Array<number> = []
let done = 0

const waitForWork = Effect.async<void>((resume) => {
  const fire = () => resume(Effect.void)
  waiters.push(fire)
  if (withCanceler) return Effect.sync(() => void (waiters = waiters.filter((w) => w !== fire)))
})
const wake = () => {
  const woken = waiters
  waiters = []
  for (const w of woken) w()
}
const read = Effect.suspend(() =>
  queue.length > 0 ? Effect.succeed(queue.splice(0)) : Effect.map(waitForWork, () => queue.splice(0))
)
const nextTurn = Effect.async<void>((resume) => void setImmediate(() => resume(Effect.void)))

await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
  yield* Effect.forkScoped(Effect.forever(Effect.flatMap(read, (xs) => Effect.sync(() => void (done += xs.length)))))
  for (let i = 0; i < n; i++) {
    queue.push(i)
    wake()
    while (done <= i) yield* nextTurn
  }
})))
