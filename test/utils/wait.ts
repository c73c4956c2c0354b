/**
 * Small helpers the tests share for observing from outside (never how the product itself waits).
 */
import * as Effect from "effect/Effect"

/** Polls until `f` holds, or fails with the last value seen after `timeoutMs`. */
export const eventually = <A>(f: () => Promise<A>, ok: (a: A) => boolean, timeoutMs = 10_000, everyMs = 20) =>
  Effect.promise(async () => {
    const until = Date.now() + timeoutMs
    for (;;) {
      const a = await f()
      if (ok(a)) return a
      if (Date.now() > until) throw new Error(`condition not reached within ${timeoutMs} ms (last: ${JSON.stringify(a)})`)
      await new Promise((r) => setTimeout(r, everyMs))
    }
  })

/** What a synchronous call threw; fails the test when it did not throw. */
export const thrown = (f: () => unknown): any => {
  try {
    f()
  } catch (error) {
    return error
  }
  throw new Error("expected a throw")
}
