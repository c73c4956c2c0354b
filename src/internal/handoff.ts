/**
 * A hand-off between fibers of one worker, cheaper than an Effect `Queue` on the hot path: producers offer
 * synchronously; a taker finds an item at once, or waits (one `Effect.async` registration, no Deferred) and is
 * resumed with the item directly.
 */
import * as Effect from "effect/Effect"

// Made by a function, so that the closure is anonymous (tsx's keepNames names, at a cost, every named one).
const takerFor = <A>(resume: (effect: Effect.Effect<A>) => void) => (a: A) => resume(Effect.succeed(a))

/** Items waiting, and takers waiting for items (never both at once). */
export class Handoff<A> {
  private items: Array<A> = []
  private head = 0
  private readonly takers = new Set<(a: A) => void>()

  /** Gives an item to a waiting taker, or keeps it for the next one. */
  offer(a: A): void {
    for (const taker of this.takers) {
      this.takers.delete(taker)
      return taker(a)
    }
    this.items.push(a)
  }

  /** Items not yet taken. */
  get size(): number {
    return this.items.length - this.head
  }

  private next(): A {
    const a = this.items[this.head]!
    this.head++
    // Compact now and then, so the array does not grow for ever.
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return a
  }

  /** The next item; waits for one (interruptibly) when there is none. */
  readonly take: Effect.Effect<A> = Effect.suspend(() =>
    this.size > 0
      ? Effect.succeed(this.next())
      : Effect.async<A>((resume) => {
        const taker = takerFor(resume)
        this.takers.add(taker)
        return Effect.sync(() => void this.takers.delete(taker))
      })
  )

  /** Takes up to `n` of the items waiting (none if none are), without waiting. */
  takeUpTo(n: number): Array<A> {
    const end = Math.min(this.items.length, this.head + n)
    const taken = this.items.slice(this.head, end)
    this.head = end
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    }
    return taken
  }

  /** Takes everything waiting. */
  takeAll(): Array<A> {
    const all = this.items.slice(this.head)
    this.items = []
    this.head = 0
    return all
  }
}
