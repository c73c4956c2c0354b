/**
 * One value pushed by a callback (a pub/sub message), awaited with a timeout: an `Effect.async` and one timer,
 * where `Effect.timeoutTo` around a Promise would fork two fibers to race a sleep on every wait (a third of what a
 * waiter allocated per round trip, and hops between fibers before the waiter saw its result).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

// setTimeout fires at once for delays it cannot represent; longer waits have no timer (they wait for the push).
const maxTimerMillis = 2 ** 31 - 1

export class Pushed<A> {
  private value: Option.Option<A> = Option.none()
  private waiter: ((value: Option.Option<A>) => void) | undefined

  /** Delivers the value; the first push counts, later ones are ignored. */
  readonly push = (a: A): void => {
    if (Option.isSome(this.value)) return
    this.value = Option.some(a)
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.(this.value)
  }

  /** The value pushed (before or during the wait), or none when it did not come within `timeout`. */
  await(timeout: Duration.Duration): Effect.Effect<Option.Option<A>> {
    return Effect.async<Option.Option<A>>((resume) => {
      if (Option.isSome(this.value)) return resume(Effect.succeed(this.value))
      const millis = Duration.toMillis(timeout)
      const timer = millis <= maxTimerMillis
        ? setTimeout(() => {
          this.waiter = undefined
          resume(Effect.succeed(Option.none()))
        }, millis)
        : undefined
      this.waiter = (value) => {
        clearTimeout(timer)
        resume(Effect.succeed(value))
      }
      return Effect.sync(() => {
        clearTimeout(timer)
        this.waiter = undefined
      })
    })
  }
}
