/**
 * The benchmark's task: a no-op, declared once and shared by the producer (harness) and our worker child,
 * so both ends agree on its name. It counts its runs, which only matters inside a worker child.
 */
import * as Effect from "effect/Effect"
import { Task } from "effect-taskiq"

export const runs = { count: 0 }

/** An Effect handler (the fast path: no Promise to adapt), doing nothing but count. */
export const noop = Task.make("bench.noop", () => Effect.sync(() => void runs.count++))

/** The name every system's job carries. */
export const taskName = noop.name
