/**
 * The example task module: declared tasks (fixed names, Schemas for a typed failure).
 */
import { Effect, Schema } from "effect"
import { Task } from "effect-taskiq"

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

export const tasks = [add, divide, slowEcho] as const
