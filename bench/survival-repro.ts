/**
 * A minimal reproduction of the young-generation survival described in RESULTS.md ("Allocation and the garbage
 * collector"): two fibers hand a number back and forth through a waiter list, the consumer waiting in an
 * `Effect.async`. With a canceler returned from the async's register function, ≈ 1 MB survives each scavenge and
 * is promoted (pauses of 4–6 ms here); without one, nothing survives (pauses under 1 ms). Run it with the collector
 * traced and compare the `promoted=` and `pause=` of the `gc=s` lines:
 *   node --trace-gc-nvp --import tsx bench/survival-repro.ts canceler | grep gc=s | tail -3
 *   node --trace-gc-nvp --import tsx bench/survival-repro.ts none     | grep gc=s | tail -3
 * Measured: with the canceler, ≈ 1,051 KB promoted per scavenge in 7 runs of 7; without, none in 6 of 7 (one run
 * promoted 2 MB). Without the effect-taskiq import below the same program promoted nothing in most runs either way:
 * what the process loaded first matters, and the mechanism is not understood yet. In the worker itself, dropping the
 * one canceler on its hot path (`endOfTurn`'s clearImmediate) changed nothing (≈ 990 bytes per task promoted
 * draining at c16 either way, `bench/drain.ts --gc`): the worker's survival has another source.
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
