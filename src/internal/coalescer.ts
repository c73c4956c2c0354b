/**
 * Coalesces the submissions made in one turn of the event loop into batches of up to `maxBatch`: concurrent `kiq`s
 * (a request handler, a loop with `concurrency`) cost one Redis command and one promise per batch, instead of one
 * each; a full batch goes out at once, without waiting for the end of the turn. A lone submission is sent at once, in
 * the same microtask queue, so an awaited `kiq` waits no longer. Every submitter gets the outcome of the round trip
 * that carried its item.
 */
import * as Effect from "effect/Effect"

/** Sends `items` (never empty, at most `maxBatch`) in one round trip. */
export type Send<A> = (items: ReadonlyArray<A>) => Promise<unknown>

/** One submission: waits for the round trip that carries `item`. */
export type Submit<A, E> = (item: A) => Effect.Effect<void, E>

/** A coalescer over `send`; `onError` turns a failed round trip into every submitter's error. */
export const make = <A, E>(send: Send<A>, onError: (cause: unknown) => E, maxBatch: number): Submit<A, E> => {
  let items: Array<A> = []
  let resumes: Array<(effect: Effect.Effect<void, E>) => void> = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    if (items.length === 0) return
    const batch = items
    const waiting = resumes
    items = []
    resumes = []
    let sent: Promise<unknown>
    try {
      sent = send(batch)
    } catch (cause) {
      sent = Promise.reject(cause)
    }
    sent.then(
      () => {
        for (const resume of waiting) resume(Effect.void)
      },
      (cause) => {
        const failure = Effect.fail(onError(cause))
        for (const resume of waiting) resume(failure)
      }
    )
  }
  // An interrupted submitter's item still goes out with its batch, as a command already written would.
  return (item) =>
    Effect.async<void, E>((resume) => {
      items.push(item)
      resumes.push(resume)
      if (items.length >= maxBatch) flush()
      else if (!scheduled) {
        scheduled = true
        queueMicrotask(flush)
      }
    })
}
