import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import { Handoff } from "../../src/internal/handoff.js"

// Lets every fiber that can run, run.
const settle = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))

describe("Handoff", () => {
  it.live("an item waiting is taken at once; takeUpTo and takeAll take what waits, in order", () =>
    Effect.gen(function*() {
      const h = new Handoff<number>()
      for (const i of [1, 2, 3, 4]) h.offer(i)
      assert.strictEqual(yield* h.take, 1)
      assert.deepStrictEqual(h.takeUpTo(2), [2, 3])
      assert.deepStrictEqual(h.takeAll(), [4])
      assert.strictEqual(h.size, 0)
      assert.strictEqual(h.wakeUps, 0)
    }))

  it.live("one item wakes one of the waiting takers, once; the others wait for the next items", () =>
    Effect.gen(function*() {
      const h = new Handoff<string>()
      const takers = yield* Effect.forEach([1, 2, 3], () => Effect.fork(h.take))
      yield* settle
      h.offer("a")
      yield* settle
      const done = takers.filter((f) => f.unsafePoll() !== null)
      assert.strictEqual(done.length, 1)
      assert.deepStrictEqual(yield* Fiber.join(done[0]!), "a")
      // Woken before it had taken its item, a taker used to wake another one, which found nothing and waited again.
      assert.strictEqual(h.wakeUps, 1)
      h.offer("b")
      h.offer("c")
      yield* settle
      const rest = yield* Effect.forEach(takers.filter((f) => f !== done[0]), Fiber.join)
      assert.deepStrictEqual(rest.sort(), ["b", "c"])
      assert.strictEqual(h.wakeUps, 3)
    }))

  it.live("the taker that began waiting last is woken first; items go out in the order offered", () =>
    Effect.gen(function*() {
      const h = new Handoff<number>()
      const order: Array<string> = []
      const takers = yield* Effect.forEach(["first", "second", "third"], (name) =>
        Effect.zipLeft(Effect.fork(Effect.tap(h.take, (n) => Effect.sync(() => order.push(`${name}:${n}`)))), settle))
      h.offer(1)
      yield* settle
      h.offer(2)
      yield* settle
      assert.deepStrictEqual(order, ["third:1", "second:2"])
      h.offer(3)
      yield* Effect.forEach(takers, Fiber.join)
      assert.deepStrictEqual(order, ["third:1", "second:2", "first:3"])
    }))

  it.live("a taker woken and interrupted before it ran leaves its item to the next taker", () =>
    Effect.gen(function*() {
      const h = new Handoff<string>()
      const first = yield* Effect.fork(h.take)
      yield* settle
      const second = yield* Effect.fork(h.take)
      yield* settle
      // The second (the last to wait) is woken for the item, and interrupted before it could run and take it.
      h.offer("x")
      assert.strictEqual(h.wakeUps, 1)
      second.unsafeInterruptAsFork(FiberId.none)
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(second)))
      assert.strictEqual(yield* Fiber.join(first), "x")
      assert.strictEqual(h.wakeUps, 2)
      assert.strictEqual(h.size, 0)
    }))
})
