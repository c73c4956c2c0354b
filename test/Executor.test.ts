import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Executor from "../src/Executor.js"
import * as Task from "../src/Task.js"
import * as TaskMessage from "../src/TaskMessage.js"

const message = (
  taskName: string,
  args: ReadonlyArray<unknown>,
  kwargs: Record<string, unknown> = {},
  labels: TaskMessage.Labels = {}
): TaskMessage.TaskMessage => ({ taskId: TaskMessage.makeTaskId(), taskName, labels, args, kwargs })

/** Runs one message through an executor of these tasks; asserts the executor itself did not fail or die. */
const run = (tasks: ReadonlyArray<Task.Task<any, any, any, never>>, m: TaskMessage.TaskMessage) =>
  Effect.gen(function*() {
    const executor = yield* Executor.make(tasks)
    const exit = yield* Effect.exit(executor.execute(m))
    if (Exit.isFailure(exit)) return assert.fail(`the executor failed: ${String(exit.cause)}`)
    return exit.value
  })

class InsufficientFunds extends Schema.TaggedError<InsufficientFunds>()("InsufficientFunds", {
  needed: Schema.Number
}) {
  override get message() {
    return `need ${this.needed} more`
  }
}

class Greeter extends Context.Tag("test/Greeter")<Greeter, { readonly greet: (name: string) => string }>() {}

describe("Executor", () => {
  describe("success", () => {
    it.effect("runs an Effect handler", () =>
      Effect.gen(function*() {
        const add = Task.make("math.add", (a: number, b: number) => Effect.succeed(a + b))
        const m = message("math.add", [1, 2], {}, { retry: 1 })
        const { result, poison } = yield* run([add], m)
        assert.isFalse(result.isErr)
        assert.strictEqual(result.returnValue, 3)
        assert.isNull(result.error)
        assert.isUndefined(poison)
        assert.deepStrictEqual(result.labels, { retry: 1 })
        assert.isAtLeast(result.executionTime, 0)
      }))

    it.effect("runs a Promise (async function) handler", () =>
      Effect.gen(function*() {
        const add = Task.make("math.add_async", async (a: number, b: number) => {
          await new Promise((resolve) => setTimeout(resolve, 1))
          return a + b
        })
        const { result, poison } = yield* run([add], message("math.add_async", [20, 22]))
        assert.isFalse(result.isErr)
        assert.strictEqual(result.returnValue, 42)
        assert.isUndefined(poison)
      }))

    it.effect("runs a handler that returns a plain value", () =>
      Effect.gen(function*() {
        const echo = Task.make("echo", (s: string) => s.toUpperCase())
        const { result } = yield* run([echo], message("echo", ["hi"]))
        assert.isFalse(result.isErr)
        assert.strictEqual(result.returnValue, "HI")
      }))

    it.effect("picks the task by name among several", () =>
      Effect.gen(function*() {
        const one = Task.make("one", () => Effect.succeed(1))
        const two = Task.make("two", () => Effect.succeed(2))
        const executor = yield* Executor.make([one, two])
        assert.deepStrictEqual([...executor.taskNames].sort(), ["one", "two"])
        assert.strictEqual((yield* executor.execute(message("two", []))).result.returnValue, 2)
        assert.strictEqual((yield* executor.execute(message("one", []))).result.returnValue, 1)
      }))

    it.effect("encodes the success with the success Schema (a Date becomes an ISO string)", () =>
      Effect.gen(function*() {
        const when = Task.make("when", (ms: number) => Effect.succeed(new Date(ms)), { success: Schema.Date })
        const { result } = yield* run([when], message("when", [Date.UTC(2024, 0, 2, 3, 4, 5)]))
        assert.isFalse(result.isErr)
        assert.strictEqual(result.returnValue, "2024-01-02T03:04:05.000Z")
      }))

    it.effect("a success that does not match its Schema is a ResultEncodeError result", () =>
      Effect.gen(function*() {
        const half = Task.make("half", (n: number) => Effect.succeed(n / 2), { success: Schema.Int })
        const { result, poison } = yield* run([half], message("half", [3]))
        assert.isTrue(result.isErr)
        assert.isNull(result.returnValue)
        assert.strictEqual(result.error?.excType, "ResultEncodeError")
        assert.strictEqual(result.error?.excModule, "effect-taskiq")
        assert.isUndefined(poison)
      }))

    it.effect("appends non-empty kwargs as the last argument", () =>
      Effect.gen(function*() {
        const f = Task.make(
          "kw",
          (a: number, b: number, kw: { readonly scale: number }) => Effect.succeed((a + b) * kw.scale)
        )
        const { result } = yield* run([f], message("kw", [1, 2], { scale: 10 }))
        assert.strictEqual(result.returnValue, 30)
      }))

    it.effect("passes only the args when kwargs are empty", () =>
      Effect.gen(function*() {
        const count = Task.make("count", (...args: Array<unknown>) => Effect.succeed(args.length))
        assert.strictEqual((yield* run([count], message("count", [1, 2], {}))).result.returnValue, 2)
        assert.strictEqual((yield* run([count], message("count", [1, 2], { x: 1 }))).result.returnValue, 3)
      }))

    it.effect("gives a handler the services of the context the executor was built in", () =>
      Effect.gen(function*() {
        const greet = Task.make("greet", (name: string) => Effect.map(Greeter, (g) => g.greet(name)))
        const executor = yield* Executor.make([greet]).pipe(
          Effect.provideService(Greeter, { greet: (name) => `hello, ${name}` })
        )
        // execute needs no services of its own: the handler's came with the executor.
        const { result } = yield* executor.execute(message("greet", ["ada"]))
        assert.isFalse(result.isErr)
        assert.strictEqual(result.returnValue, "hello, ada")
        // A worker slot takes the services once, for all the tasks it runs.
        const many = yield* executor.withServices!((execute) =>
          Effect.forEach(["ada", "bob"], (name) => Effect.map(execute(message("greet", [name])), (e) => e.result.returnValue))
        )
        assert.deepStrictEqual(many, ["hello, ada", "hello, bob"])
      }))
  })

  describe("args Schema", () => {
    const schedule = Task.make(
      "schedule",
      (n: number, at: Date) => Effect.succeed(`${n}@${at.toISOString()}`),
      { args: Schema.mutable(Schema.Tuple(Schema.NumberFromString, Schema.Date)) }
    )

    it.effect("decodes the arguments before the handler sees them", () =>
      Effect.gen(function*() {
        const { result, poison } = yield* run([schedule], message("schedule", ["5", "2024-01-01T00:00:00.000Z"]))
        assert.isFalse(result.isErr, JSON.stringify(result.error))
        assert.strictEqual(result.returnValue, "5@2024-01-01T00:00:00.000Z")
        assert.isUndefined(poison)
      }))

    it.effect("invalid arguments are an InvalidTask error result marked poison", () =>
      Effect.gen(function*() {
        const { result, poison } = yield* run([schedule], message("schedule", ["five", "not a date"]))
        assert.isTrue(result.isErr)
        assert.isNull(result.returnValue)
        assert.strictEqual(result.error?.excType, "InvalidTask")
        assert.strictEqual(result.error?.excModule, "effect-taskiq")
        assert.include(String(result.error?.excMessage[0]), "InvalidArguments")
        assert.isString(poison)
        assert.include(poison!, "schedule")
      }))

    it.effect("a wrong number of arguments is InvalidTask too", () =>
      Effect.gen(function*() {
        const { result, poison } = yield* run([schedule], message("schedule", ["5"]))
        assert.strictEqual(result.error?.excType, "InvalidTask")
        assert.isString(poison)
      }))
  })

  describe("failures become error results", () => {
    it.effect("an unknown task name is an InvalidTask error marked poison", () =>
      Effect.gen(function*() {
        const known = Task.make("known", () => Effect.succeed(1))
        const { result, poison } = yield* run([known], message("nobody.home", [1]))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "InvalidTask")
        assert.strictEqual(result.error?.excModule, "effect-taskiq")
        assert.include(String(result.error?.excMessage[0]), "nobody.home")
        assert.include(String(result.error?.excMessage[0]), "UnknownTask")
        assert.isString(poison)
        assert.include(poison!, "nobody.home")
        assert.include(poison!, "known") // says what it does know
      }))

    it.effect("a rejected Promise is an error named after the Error", () =>
      Effect.gen(function*() {
        const f = Task.make("reject", async (_: number): Promise<number> => {
          throw new TypeError("not a number")
        })
        const { result, poison } = yield* run([f], message("reject", [1]))
        assert.isTrue(result.isErr)
        assert.isNull(result.returnValue)
        assert.strictEqual(result.error?.excType, "TypeError")
        assert.deepStrictEqual(result.error?.excMessage, ["not a number"])
        assert.include(result.error?.pretty ?? "", "not a number")
        assert.isUndefined(poison)
      }))

    it.effect("a Promise rejected with a string is an error carrying the string", () =>
      Effect.gen(function*() {
        const f = Task.make("reject_str", () => Promise.reject("went wrong"))
        const { result } = yield* run([f], message("reject_str", []))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "string")
        assert.deepStrictEqual(result.error?.excMessage, ["went wrong"])
      }))

    it.effect("a handler that throws synchronously is an error result; the executor does not fail", () =>
      Effect.gen(function*() {
        const f = Task.make("throws", (_: number): Effect.Effect<number> => {
          throw new RangeError("out of range")
        })
        const { result, poison } = yield* run([f], message("throws", [1]))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "RangeError")
        assert.deepStrictEqual(result.error?.excMessage, ["out of range"])
        assert.strictEqual(result.error?.excModule, "js")
        assert.include(result.error?.pretty ?? "", "out of range")
        assert.isUndefined(poison)
      }))

    it.effect("a handler that throws a string", () =>
      Effect.gen(function*() {
        const f = Task.make("throws_str", (): number => {
          throw "plain string"
        })
        const { result } = yield* run([f], message("throws_str", []))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "string")
        assert.deepStrictEqual(result.error?.excMessage, ["plain string"])
      }))

    it.effect("a handler that throws a plain object", () =>
      Effect.gen(function*() {
        const f = Task.make("throws_obj", (): number => {
          throw { code: 42, why: "nope" }
        })
        const { result } = yield* run([f], message("throws_obj", []))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "Object")
        assert.deepStrictEqual(JSON.parse(String(result.error?.excMessage[0])), { code: 42, why: "nope" })
      }))

    it.effect("a handler whose Effect dies is an error result", () =>
      Effect.gen(function*() {
        const f = Task.make("dies", () => Effect.die(new SyntaxError("bad syntax")))
        const { result } = yield* run([f], message("dies", []))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "SyntaxError")
        assert.deepStrictEqual(result.error?.excMessage, ["bad syntax"])
      }))

    it.effect("a handler that interrupts itself is a TaskInterrupted error result", () =>
      Effect.gen(function*() {
        const f = Task.make("interrupts", () => Effect.interrupt)
        const { result } = yield* run([f], message("interrupts", []))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "TaskInterrupted")
      }))

    it.effect("a typed failure with a failure Schema carries its encoding; excType is the tag", () =>
      Effect.gen(function*() {
        const withdraw = Task.make(
          "bank.withdraw",
          (amount: number) =>
            amount > 10 ? Effect.fail(new InsufficientFunds({ needed: amount - 10 })) : Effect.succeed(10 - amount),
          { failure: InsufficientFunds }
        )
        const { result, poison } = yield* run([withdraw], message("bank.withdraw", [15]))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "InsufficientFunds")
        assert.deepStrictEqual(result.error?.value, { _tag: "InsufficientFunds", needed: 5 })
        assert.deepStrictEqual(result.error?.excMessage, ["need 5 more"])
        assert.isUndefined(poison)
        const ok = yield* run([withdraw], message("bank.withdraw", [4]))
        assert.strictEqual(ok.result.returnValue, 6)
      }))

    it.effect("a typed failure without a failure Schema has no encoded value", () =>
      Effect.gen(function*() {
        const f = Task.make("untyped", () => Effect.fail(new InsufficientFunds({ needed: 1 })))
        const { result } = yield* run([f], message("untyped", []))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "InsufficientFunds")
        assert.isUndefined(result.error?.value)
      }))
  })

  describe("timeout", () => {
    it.live("interrupts the handler after its timeout: a TaskTimeout result, and the finalizer ran", () =>
      Effect.gen(function*() {
        const finalized = yield* Ref.make(false)
        const slow = Task.make(
          "slow",
          () =>
            Effect.never.pipe(
              Effect.as(1),
              Effect.onInterrupt(() => Ref.set(finalized, true))
            ),
          { timeout: "50 millis" }
        )
        const start = Date.now()
        const { result, poison } = yield* run([slow], message("slow", []))
        assert.isBelow(Date.now() - start, 5_000)
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "TaskTimeout")
        assert.strictEqual(result.error?.excModule, "effect-taskiq")
        assert.include(String(result.error?.excMessage[0]), "slow")
        assert.include(String(result.error?.excMessage[0]), "50 ms")
        assert.isUndefined(poison)
        assert.isTrue(yield* Ref.get(finalized))
      }))

    it.live("runs a scoped handler's finalizer on timeout", () =>
      Effect.gen(function*() {
        let released = false
        const slow = Task.make(
          "slow_scoped",
          () =>
            Effect.scoped(Effect.gen(function*() {
              yield* Effect.addFinalizer(() => Effect.sync(() => (released = true)))
              return yield* Effect.never
            })),
          { timeout: "30 millis" }
        )
        const { result } = yield* run([slow], message("slow_scoped", []))
        assert.strictEqual(result.error?.excType, "TaskTimeout")
        assert.isTrue(released)
      }))

    it.live("a handler that finishes within its timeout succeeds", () =>
      Effect.gen(function*() {
        const quick = Task.make("quick", () => Effect.as(Effect.sleep("5 millis"), "done"), { timeout: "2 seconds" })
        const { result } = yield* run([quick], message("quick", []))
        assert.isFalse(result.isErr)
        assert.strictEqual(result.returnValue, "done")
      }))
  })
})
