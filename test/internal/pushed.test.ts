import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { Pushed } from "../../src/internal/pushed.js"

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length

describe("Pushed", () => {
  it.live("a value pushed before the wait is returned at once; later pushes are ignored", () =>
    Effect.gen(function*() {
      const p = new Pushed<string>()
      p.push("first")
      p.push("second")
      assert.deepStrictEqual(yield* p.await(Duration.seconds(10)), Option.some("first"))
    }))

  it.live("a value pushed during the wait ends it, and its timer is cleared", () =>
    Effect.gen(function*() {
      const p = new Pushed<number>()
      const before = timers()
      const waiting = yield* Effect.fork(p.await(Duration.seconds(10)))
      yield* Effect.sleep("20 millis")
      assert.strictEqual(timers(), before + 1)
      p.push(7)
      assert.deepStrictEqual(yield* Fiber.join(waiting), Option.some(7))
      assert.strictEqual(timers(), before)
    }))

  it.live("nothing pushed within the timeout is None", () =>
    Effect.gen(function*() {
      const started = Date.now()
      assert.deepStrictEqual(yield* new Pushed<string>().await(Duration.millis(50)), Option.none())
      assert.isAtLeast(Date.now() - started, 45)
    }))

  it.live("an interrupted wait ends at once, and a push after it is kept for the next wait", () =>
    Effect.gen(function*() {
      const p = new Pushed<string>()
      const waiting = yield* Effect.fork(p.await(Duration.seconds(10)))
      yield* Effect.sleep("20 millis")
      const exit = yield* Fiber.interrupt(waiting)
      assert.isTrue(exit._tag === "Failure")
      p.push("late")
      assert.deepStrictEqual(yield* p.await(Duration.millis(1)), Option.some("late"))
    }))

  it.live("a timeout too long for a timer waits for the push instead of firing at once", () =>
    Effect.gen(function*() {
      const p = new Pushed<string>()
      const waiting = yield* Effect.fork(p.await(Duration.days(100)))
      yield* Effect.sleep("30 millis")
      assert.isNull(yield* Fiber.poll(waiting).pipe(Effect.map(Option.getOrNull)))
      p.push("late")
      assert.deepStrictEqual(yield* Fiber.join(waiting), Option.some("late"))
    }))
})
