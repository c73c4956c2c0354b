/**
 * Bad input, end to end: a real worker (Worker.run over the Redis layers) on a real Redis, fed what a buggy or
 * hostile producer could put in its queue, and tasks that misbehave. Each case ends as a readable error result
 * and/or a dead letter with the reason, and the same worker is still up and serving good tasks afterwards.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Broker, type DeadLetter } from "../src/Broker.js"
import * as Executor from "../src/Executor.js"
import { scheduleWith } from "../src/Producer.js"
import { ResultBackend } from "../src/ResultBackend.js"
import * as Task from "../src/Task.js"
import * as Taskiq from "../src/Taskiq.js"
import * as TaskMessage from "../src/TaskMessage.js"
import type { TaskResult } from "../src/TaskResult.js"
import * as Worker from "../src/Worker.js"
import { layerRedis, names, rawClient, uniqueName } from "./utils/redis.js"
import { eventually } from "./utils/wait.js"

const add = Task.make("bad.add", (a: number, b: number) => Effect.succeed(a + b))
const typed = Task.make("bad.typed", (n: number, unit: "kg" | "lb") => Effect.succeed(`${n} ${unit}`), {
  args: Schema.Tuple(Schema.Number.pipe(Schema.int(), Schema.positive()), Schema.Literal("kg", "lb"))
})
const echo = Task.make("bad.echo", (text: string) => Effect.succeed(text.length))
const bigResult = Task.make("bad.big_result", (n: number) => Effect.succeed("r".repeat(n)))
const thrownValues: Record<string, unknown> = {
  string: "a bare string",
  number: 42,
  object: { code: "E_NOPE", retryable: false },
  null: null,
  undefined: undefined
}
const throwsValue = Task.make("bad.throws", async (kind: string) => {
  throw thrownValues[kind]
})
const throwsSync = Task.make("bad.throws_sync", (_: number) => {
  throw { not: "an Error" }
})
const neverSettles = Task.make("bad.never", () => Effect.never, { timeout: "300 millis" })
const neverResolves = Task.make("bad.never_promise", () => new Promise<number>(() => {}), { timeout: "300 millis" })
const noTimeoutOfItsOwn = Task.make("bad.never_unless_told", () => Effect.never)
const dies = Task.make("bad.dies", () => Effect.die(new RangeError("index 7 out of range")))
const diesInSync = Task.make("bad.dies_sync", () => Effect.sync((): number => (undefined as unknown as { x: { y: number } }).x.y))
const interruptsItself = Task.make("bad.interrupts", () => Effect.interrupt)

const tasks = [add, typed, echo, bigResult, throwsValue, throwsSync, neverSettles, neverResolves, noTimeoutOfItsOwn, dies, diesInSync, interruptsItself] as const

type Services = Broker | ResultBackend

/** A queue of its own, a worker on it, and what the cases need to feed it and look at the outcome. */
const setUp = (label: string, options: Worker.WorkerOptions = {}, redisOptions: Taskiq.RedisOptions = {}) =>
  Effect.gen(function*() {
    const root = uniqueName(`bad-${label}`)
    const { queueName } = names(root)
    const ctx = yield* Layer.build(layerRedis(root, redisOptions))
    const raw = yield* rawClient()
    const broker = Context.get(ctx, Broker)
    const backend = Context.get(ctx, ResultBackend)
    const worker = yield* Worker.run({ blockMs: 100, maxAsyncTasks: 2, ...options }).pipe(
      Effect.provide(Executor.layer(tasks)),
      Effect.provide(ctx),
      Effect.forkScoped
    )
    const inCtx = <A, E>(effect: Effect.Effect<A, E, Services>) => Effect.provide(effect, ctx)
    let served = 0
    /** The worker is up, and runs good tasks to completion (more than it has slots, so none is stuck). */
    const stillServing = Effect.gen(function*() {
      const values = yield* inCtx(
        Effect.forEach([1, 2, 3, 4], (i) => Effect.flatMap(add.kiq(served, i), (h) => h.result({ timeout: "15 seconds" })), {
          concurrency: "unbounded"
        })
      )
      assert.deepStrictEqual(values, [1, 2, 3, 4].map((i) => served + i))
      served++
      assert.isTrue(Option.isNone(yield* Fiber.poll(worker)), "the worker is still running")
    })
    /** The stored result of a task id, waited for. */
    const resultOf = (taskId: string) =>
      Effect.map(backend.wait(taskId, Duration.seconds(15)), (r) => Option.getOrThrowWith(r, () => new Error(`no result for ${taskId}`)))
    /** Waits until there are `n` dead letters. */
    const deadLetters = (n: number) =>
      eventually(() => Effect.runPromise(broker.deadLetters()), (d: ReadonlyArray<DeadLetter>) => d.length >= n, 15_000)
    /** Nothing of the bad input stays in the stream or pending. */
    const drained = eventually(() => raw.xlen(queueName), (n) => n === 0, 10_000)
    const xadd = (...fields: Array<string>) => Effect.promise(() => raw.xadd(queueName, "*", ...fields))
    return { ctx, broker, backend, raw, queueName, inCtx, stillServing, resultOf, deadLetters, drained, xadd }
  })

const message = (taskName: string, args: ReadonlyArray<unknown>, labels: TaskMessage.Labels = {}): TaskMessage.TaskMessage => ({
  taskId: TaskMessage.makeTaskId(),
  taskName,
  labels,
  args,
  kwargs: {}
})

const assertErr = (result: TaskResult, excType: string, messagePart: string) => {
  assert.isTrue(result.isErr)
  assert.strictEqual(result.error?.excType, excType)
  assert.include(String(result.error?.excMessage.join(" ")), messagePart)
}

describe("bad input: what a producer can put in the queue", () => {
  it.scopedLive("non-JSON data written raw to the stream is dead-lettered with the parse error", () =>
    Effect.gen(function*() {
      const t = yield* setUp("not-json")
      yield* t.stillServing
      yield* t.xadd("data", "not json")
      yield* t.xadd("data", "")
      yield* t.xadd("data", "{\"task_id\": \"0123")
      const dead = yield* t.deadLetters(3)
      for (const d of dead) {
        assert.match(d.reason, /^Undecodable task message \(InvalidJson\): /)
        assert.isUndefined(d.taskId, "no task id could be read")
      }
      assert.deepStrictEqual(dead.map((d) => d.data).sort(), ["", "not json", "{\"task_id\": \"0123"], "the payload is kept for an operator")
      yield* t.drained
      yield* t.stillServing
    }))

  it.scopedLive("JSON of the wrong shape: an error result where the task id is readable, and a dead letter naming the field", () =>
    Effect.gen(function*() {
      const t = yield* setUp("shape")
      yield* t.stillServing
      const readable = TaskMessage.makeTaskId()
      yield* t.xadd("data", JSON.stringify({ task_id: readable, task_name: "bad.add", args: "1, 2" }))
      yield* t.xadd("data", JSON.stringify([1, 2, 3]))
      yield* t.xadd("data", JSON.stringify(null))
      yield* t.xadd("data", JSON.stringify({ task_id: "not-a-uuid", task_name: "bad.add" }))
      const result = yield* t.resultOf(readable)
      assertErr(result, "MessageDecodeError", "args")
      const dead = yield* t.deadLetters(4)
      for (const d of dead) assert.match(d.reason, /^Undecodable task message \(InvalidShape\): /)
      const withId = dead.filter((d) => d.taskId !== undefined)
      assert.deepStrictEqual(withId.map((d) => d.taskId), [readable], "only one had a readable id")
      assert.include(withId[0]!.reason, "args")
      assert.isTrue(dead.some((d) => d.reason.includes("task_id must be 32 lower-case hex digits")))
      yield* t.drained
      yield* t.stillServing
    }))

  it.scopedLive("a stream entry without a data field is dead-lettered", () =>
    Effect.gen(function*() {
      const t = yield* setUp("no-data")
      yield* t.stillServing
      yield* t.xadd("payload", JSON.stringify(message("bad.add", [1, 2])))
      const [dead] = yield* t.deadLetters(1)
      assert.include(dead!.reason, "the stream entry has no 'data' field")
      yield* t.drained
      yield* t.stillServing
    }))

  it.scopedLive("an unknown task name: an InvalidTask error result naming the known tasks, and a dead letter", () =>
    Effect.gen(function*() {
      const t = yield* setUp("unknown")
      yield* t.stillServing
      const m = message("no.such.task", [1])
      yield* t.broker.publish(m)
      const result = yield* t.resultOf(m.taskId)
      assertErr(result, "InvalidTask", `no task named "no.such.task" is registered with this worker`)
      assert.include(String(result.error?.excMessage[0]), "bad.add")
      const [dead] = yield* t.deadLetters(1)
      assert.strictEqual(dead!.taskId, m.taskId)
      assert.include(dead!.reason, "UnknownTask")
      yield* t.drained
      yield* t.stillServing
    }))

  it.scopedLive("arguments that fail the task's Schema: refused at submit; from another producer, an error result and a dead letter", () =>
    Effect.gen(function*() {
      const t = yield* setUp("args")
      yield* t.stillServing
      assert.strictEqual(yield* t.inCtx(Effect.flatMap(typed.kiq(3, "kg"), (h) => h.result({ timeout: "15 seconds" }))), "3 kg")
      // Through the typed API the worker never sees them.
      const refused = yield* t.inCtx(Effect.flip(typed.kiq(-1, "kg")))
      assert.strictEqual(refused._tag, "InvalidTask")
      assert.strictEqual((refused as Task.InvalidTask).reason, "InvalidArguments")
      // Another producer (taskiq in Python, a script) is not held to the Schema: the worker is.
      const bad = [message("bad.typed", [1.5, "kg"]), message("bad.typed", [2, "stone"]), message("bad.typed", [2])]
      for (const m of bad) yield* t.broker.publish(m)
      for (const m of bad) {
        const result = yield* t.resultOf(m.taskId)
        assertErr(result, "InvalidTask", "InvalidArguments")
      }
      assert.include(String((yield* t.resultOf(bad[1]!.taskId)).error?.excMessage[0]), `"stone"`)
      const dead = yield* t.deadLetters(3)
      assert.deepStrictEqual(dead.map((d) => d.taskId).sort(), bad.map((m) => m.taskId).sort())
      for (const d of dead) assert.include(d.reason, "InvalidArguments")
      yield* t.drained
      yield* t.stillServing
    }))

  it.scopedLive("a 10 MB payload is refused at submit with a typed error (maxMessageBytes, default 1 MiB); nothing is queued", () =>
    Effect.gen(function*() {
      const t = yield* setUp("too-large")
      yield* t.stillServing
      const huge = "x".repeat(10 * 1024 * 1024)
      const error = yield* t.inCtx(Effect.flip(echo.kiq(huge)))
      assert.strictEqual(error._tag, "BrokerError")
      assert.strictEqual((error as { reason: string }).reason, "MessageTooLarge")
      assert.match(error.message, /\d+ bytes is over maxMessageBytes \(1048576\)/)
      assert.strictEqual(yield* Effect.promise(() => t.raw.xlen(t.queueName)), 0, "nothing was queued")
      // Just under the limit goes through.
      assert.strictEqual(yield* t.inCtx(Effect.flatMap(echo.kiq("y".repeat(1024 * 1024 - 1000)), (h) => h.result())), 1024 * 1024 - 1000)
      yield* t.stillServing
    }))

  it.scopedLive("a message over maxMessageBytes written by another producer is dead-lettered unrun", () =>
    Effect.gen(function*() {
      const t = yield* setUp("too-large-raw")
      yield* t.stillServing
      const m = message("bad.echo", ["z".repeat(3 * 1024 * 1024)])
      yield* t.xadd("data", TaskMessage.encodeJson(m))
      const [dead] = yield* t.deadLetters(1)
      assert.match(dead!.reason, /^Undecodable task message \(TooLarge\): \d+ bytes is over maxMessageBytes \(1048576\)/)
      yield* t.drained
      yield* t.stillServing
      // Not run: the payload was not even parsed, so no result was written under the id it claims.
      assert.isTrue(Option.isNone(yield* t.backend.get(m.taskId)))
    }), { timeout: 60_000 })
})

describe("bad input: tasks that misbehave", () => {
  it.scopedLive("a task that throws a non-Error value gets a readable error result", () =>
    Effect.gen(function*() {
      const t = yield* setUp("throws")
      yield* t.stillServing
      const outcomes = yield* t.inCtx(
        Effect.forEach(Object.keys(thrownValues), (kind) => Effect.flatMap(throwsValue.kiq(kind), (h) => h.waitResult({ timeout: "15 seconds" })), {
          concurrency: "unbounded"
        })
      )
      const [string, number, object, nul, undef] = outcomes.map((r) => r.error)
      assert.deepStrictEqual([string?.excType, string?.excMessage], ["string", ["a bare string"]])
      assert.deepStrictEqual([number?.excType, number?.excMessage], ["number", ["42"]])
      assert.strictEqual(object?.excType, "Object")
      assert.deepStrictEqual(JSON.parse(String(object!.excMessage[0])), { code: "E_NOPE", retryable: false })
      assert.deepStrictEqual([nul?.excType, nul?.excMessage], ["object", ["null"]])
      assert.deepStrictEqual([undef?.excType, undef?.excMessage], ["undefined", ["undefined"]])
      for (const r of outcomes) assert.isTrue(r.isErr)
      // `result()` turns each into TaskFailed, with the text.
      const failed = yield* t.inCtx(Effect.flip(Effect.flatMap(throwsValue.kiq("string"), (h) => h.result({ timeout: "15 seconds" }))))
      assert.strictEqual(failed._tag, "TaskFailed")
      assert.include(failed.message, "a bare string")
      const sync = yield* t.inCtx(Effect.flatMap(throwsSync.kiq(1), (h) => h.waitResult({ timeout: "15 seconds" })))
      assert.isTrue(sync.isErr)
      assert.include(String(sync.error?.excMessage[0]), "an Error")
      assert.strictEqual((yield* t.broker.deadLetters()).length, 0, "a failed task is a result, not a dead letter")
      yield* t.stillServing
    }))

  it.scopedLive("a task that never settles is interrupted at its timeout (TaskTimeout) and frees its slot", () =>
    Effect.gen(function*() {
      // Two slots and four hanging tasks: were a slot kept, the good tasks after them would never run.
      const t = yield* setUp("never", { maxAsyncTasks: 2 })
      yield* t.stillServing
      const handles = yield* t.inCtx(Effect.all([
        neverSettles.kiq(),
        neverResolves.kiq(),
        neverSettles.kiq(),
        scheduleWith(noTimeoutOfItsOwn, { timeout: "300 millis" })
      ]))
      const results = yield* t.inCtx(Effect.forEach(handles, (h) => h.waitResult({ timeout: "15 seconds" }), { concurrency: "unbounded" }))
      for (const r of results) {
        assert.isTrue(r.isErr)
        assert.strictEqual(r.error?.excType, "TaskTimeout")
        assert.match(String(r.error?.excMessage[0]), /did not finish within 300 ms and was interrupted/)
      }
      yield* t.stillServing
    }))

  it.scopedLive("a handler that dies with a defect (or interrupts itself) gets an error result; the pool goes on", () =>
    Effect.gen(function*() {
      const t = yield* setUp("defect")
      yield* t.stillServing
      const [died, diedSync, interrupted] = yield* t.inCtx(
        Effect.forEach([dies.kiq(), diesInSync.kiq(), interruptsItself.kiq()], (kiq) => Effect.flatMap(kiq, (h) => h.waitResult({ timeout: "15 seconds" })))
      )
      assertErr(died!, "RangeError", "index 7 out of range")
      assert.include(died!.error?.pretty, "RangeError: index 7 out of range")
      assertErr(diedSync!, "TypeError", "Cannot read properties of undefined")
      assertErr(interrupted!, "TaskInterrupted", "the task was interrupted")
      assert.strictEqual((yield* t.broker.deadLetters()).length, 0)
      yield* t.drained
      yield* t.stillServing
    }))

  it.scopedLive("a result too large to store (over maxResultBytes) is stored as a ResultTooLarge error result", () =>
    Effect.gen(function*() {
      const t = yield* setUp("big-result", {}, { maxResultBytes: 64 * 1024 })
      yield* t.stillServing
      const result = yield* t.inCtx(Effect.flatMap(bigResult.kiq(1024 * 1024), (h) => h.waitResult({ timeout: "15 seconds" })))
      assertErr(result, "ResultTooLarge", "over maxResultBytes (65536)")
      assert.strictEqual(yield* t.inCtx(Effect.flatMap(bigResult.kiq(1000), (h) => h.result({ timeout: "15 seconds" }))), "r".repeat(1000))
      yield* t.drained
      yield* t.stillServing
    }))
})
