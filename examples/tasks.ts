/**
 * The example task module: declared tasks (fixed names, Schemas for a typed failure).
 */
import { Effect, Schedule, Schema } from "effect"
import { setProgress, Task } from "effect-taskiq"

// A fixed name is the routing key on the wire (taskiq's `@broker.task("my.add")`).
export const add = Task.make("my.add", (a: number, b: number) => Effect.succeed(a + b))

/** A typed failure that crosses the process boundary and comes back as itself. */
export class DivisionByZero extends Schema.TaggedError<DivisionByZero>()("DivisionByZero", { dividend: Schema.Number }) {}

export const divide = Task.make(
  "my.divide",
  (a: number, b: number) => b === 0 ? Effect.fail(new DivisionByZero({ dividend: a })) : Effect.succeed(a / b),
  {
    failure: DivisionByZero,                                  // encoded by the worker, decoded by the caller
    args: Schema.Tuple(Schema.Number, Schema.Number),         // validated on both ends
    timeout: "30 seconds"                                     // interrupted after, with a TaskTimeout error result
  }
)

/** A Promise-returning handler works as well; it takes a while, like real I/O. Interrupted after 2 seconds. */
export const slowEcho = Task.make("my.slow_echo", async (text: string, ms: number) => {
  await new Promise((resolve) => setTimeout(resolve, ms))
  return text
}, { timeout: "2 seconds" })

/** An unreliable dependency: fails on its first two runs of a given key, retried 50 ms apart. */
const attemptsByKey = new Map<string, number>()
export const flakyFetch = Task.make(
  "my.flaky_fetch",
  (key: string) => {
    const attempt = (attemptsByKey.get(key) ?? 0) + 1
    attemptsByKey.set(key, attempt)
    return attempt < 3 ? Effect.fail(new Error(`attempt ${attempt}: upstream unavailable`)) : Effect.succeed(`${key} on attempt ${attempt}`)
  },
  { retry: { maxAttempts: 5, schedule: Schedule.spaced("50 millis") } }
)

/** Reports progress as it goes; callers watch it with `handle.progress` (pushed, not polled). */
export const resize = Task.make("my.resize", (file: string, steps: number) =>
  Effect.gen(function*() {
    for (let step = 1; step <= steps; step++) {
      yield* setProgress("RESIZING", { file, step, of: steps })
      yield* Effect.sleep("100 millis")
    }
    return `${file} resized`
  }))

export const tasks = [add, divide, slowEcho, flakyFetch, resize] as const
