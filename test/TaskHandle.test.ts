import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import { ResultBackend } from "../src/ResultBackend.js"
import * as MemoryResultBackend from "../src/ResultBackend/Memory.js"
import * as Task from "../src/Task.js"
import * as TaskHandle from "../src/TaskHandle.js"
import * as TaskMessage from "../src/TaskMessage.js"
import * as TaskResult from "../src/TaskResult.js"

class InsufficientFunds extends Schema.TaggedError<InsufficientFunds>()("InsufficientFunds", {
  needed: Schema.Number
}) {}

const withdraw = Task.make(
  "bank.withdraw",
  (amount: number) =>
    amount > 10 ? Effect.fail(new InsufficientFunds({ needed: amount - 10 })) : Effect.succeed(new Date(amount)),
  { success: Schema.Date, failure: InsufficientFunds }
)

const plain = Task.make("plain", (a: number) => Effect.succeed(a))

const setResult = (taskId: string, result: TaskResult.TaskResult) =>
  Effect.flatMap(ResultBackend, (backend) => backend.set(taskId, result))

const error = (o: Partial<TaskResult.TaskError> = {}): TaskResult.TaskError => ({
  excType: "ValueError",
  excMessage: ["bad"],
  excModule: "builtins",
  ...o
})

describe("TaskHandle", () => {
  describe("waitResult", () => {
    it.live("resolves when the result is set later", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        const handle = TaskHandle.make(taskId, "plain", "q", plain)
        const setter = yield* setResult(taskId, TaskResult.succeed(42, 0.1, { who: "w" })).pipe(
          Effect.delay("100 millis"),
          Effect.fork
        )
        const start = Date.now()
        const result = yield* handle.waitResult({ timeout: "10 seconds" })
        assert.isAtLeast(Date.now() - start, 50) // it did wait for the setter
        assert.isFalse(result.isErr)
        assert.strictEqual(result.returnValue, 42)
        assert.strictEqual(result.executionTime, 0.1)
        assert.deepStrictEqual(result.labels, { who: "w" })
        yield* Fiber.join(setter)
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("returns a result that is already there", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(taskId, TaskResult.succeed("done", 0))
        const result = yield* TaskHandle.make(taskId, "plain", "q").waitResult({ timeout: "1 second" })
        assert.strictEqual(result.returnValue, "done")
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("decodes the return value with the success Schema", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(taskId, TaskResult.succeed("2024-01-02T03:04:05.000Z", 0))
        const result = yield* TaskHandle.make(taskId, withdraw.name, "q", withdraw).waitResult({ timeout: "1 second" })
        assert.instanceOf(result.returnValue, Date)
        assert.strictEqual((result.returnValue as Date).toISOString(), "2024-01-02T03:04:05.000Z")
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("gives an error result back as it is", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(taskId, TaskResult.fail(error(), 0.5))
        const result = yield* TaskHandle.make(taskId, withdraw.name, "q", withdraw).waitResult({ timeout: "1 second" })
        assert.isTrue(result.isErr)
        assert.isNull(result.returnValue)
        assert.strictEqual(result.error?.excType, "ValueError")
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("times out with ResultTimeout naming the task, the queue and a missing worker", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        const handle = TaskHandle.make(taskId, "reports.build", "kc_taskiq_queue", plain)
        const start = Date.now()
        const e = yield* Effect.flip(handle.waitResult({ timeout: "50 millis" }))
        const waited = Date.now() - start
        assert.isAtLeast(waited, 40)
        assert.isBelow(waited, 5_000)
        assert.strictEqual(e._tag, "ResultTimeout")
        if (e._tag !== "ResultTimeout") return
        assert.strictEqual(e.taskId, taskId)
        assert.strictEqual(e.taskName, "reports.build")
        assert.strictEqual(e.queue, "kc_taskiq_queue")
        assert.strictEqual(e.waitedMs, 50)
        assert.include(e.message, taskId)
        assert.include(e.message, "kc_taskiq_queue")
        assert.include(e.message, "50 ms")
        assert.match(e.message, /worker/i)
        assert.include(e.message, "taskiq worker") // how to start one
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("a stored value that does not match the success Schema is a ResultDecodeError", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(taskId, TaskResult.succeed("not a date", 0))
        const handle = TaskHandle.make(taskId, withdraw.name, "q", withdraw)
        const e = yield* Effect.flip(handle.waitResult({ timeout: "1 second" }))
        assert.strictEqual(e._tag, "ResultDecodeError")
        if (e._tag !== "ResultDecodeError") return
        assert.strictEqual(e.taskId, taskId)
        assert.include(e.detail, "success schema")
        const e2 = yield* Effect.flip(handle.result({ timeout: "1 second" }))
        assert.strictEqual(e2._tag, "ResultDecodeError")
      }).pipe(Effect.provide(MemoryResultBackend.layer())))
  })

  describe("result", () => {
    it.live("succeeds with the decoded value", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(taskId, TaskResult.succeed("2030-06-01T00:00:00.000Z", 0))
        const value = yield* TaskHandle.make(taskId, withdraw.name, "q", withdraw).result({ timeout: "1 second" })
        assert.instanceOf(value, Date)
        assert.strictEqual(value.getTime(), Date.UTC(2030, 5, 1))
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("waits for a result set later", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(taskId, TaskResult.succeed(7, 0)).pipe(Effect.delay("50 millis"), Effect.fork)
        const value = yield* TaskHandle.make(taskId, plain.name, "q", plain).result({ timeout: "10 seconds" })
        assert.strictEqual(value, 7)
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("fails with the task's own typed error when error.value decodes", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(
          taskId,
          TaskResult.fail(
            error({ excType: "InsufficientFunds", excMessage: [""], excModule: "js", value: { _tag: "InsufficientFunds", needed: 5 } }),
            0
          )
        )
        const e = yield* Effect.flip(TaskHandle.make(taskId, withdraw.name, "q", withdraw).result({ timeout: "1 second" }))
        assert.instanceOf(e, InsufficientFunds)
        if (!(e instanceof InsufficientFunds)) return
        assert.strictEqual(e.needed, 5)
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("fails with TaskFailed when error.value does not decode with the failure Schema", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(
          taskId,
          TaskResult.fail(
            error({ excType: "Other", excMessage: ["something else"], pretty: "Other: something else", value: { _tag: "Other" } }),
            0
          )
        )
        const e = yield* Effect.flip(TaskHandle.make(taskId, withdraw.name, "q", withdraw).result({ timeout: "1 second" }))
        assert.instanceOf(e, TaskHandle.TaskFailed)
        if (!(e instanceof TaskHandle.TaskFailed)) return
        assert.strictEqual(e.taskId, taskId)
        assert.strictEqual(e.taskName, "bank.withdraw")
        assert.strictEqual(e.excType, "Other")
        assert.strictEqual(e.excMessage, "something else")
        assert.strictEqual(e.pretty, "Other: something else")
        assert.include(e.message, "Other")
        assert.include(e.message, "something else")
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("fails with TaskFailed carrying excType/excMessage for a Python exception", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        // As taskiq stores it: no exc_value, extra exception fields.
        yield* setResult(
          taskId,
          TaskResult.fail(error({ extra: { exc_cause: null, exc_context: null, exc_suppress_context: false } }), 0)
        )
        const e = yield* Effect.flip(TaskHandle.make(taskId, withdraw.name, "q", withdraw).result({ timeout: "1 second" }))
        assert.instanceOf(e, TaskHandle.TaskFailed)
        if (!(e instanceof TaskHandle.TaskFailed)) return
        assert.strictEqual(e.excType, "ValueError")
        assert.strictEqual(e.excMessage, "bad")
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("fails with TaskFailed for a task without a failure Schema", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        yield* setResult(
          taskId,
          TaskResult.fail(error({ excType: "InsufficientFunds", value: { _tag: "InsufficientFunds", needed: 5 } }), 0)
        )
        const e = yield* Effect.flip(TaskHandle.make(taskId, plain.name, "q", plain).result({ timeout: "1 second" }))
        assert.instanceOf(e, TaskHandle.TaskFailed)
        assert.notInstanceOf(e, InsufficientFunds)
      }).pipe(Effect.provide(MemoryResultBackend.layer())))

    it.live("fails with ResultTimeout when no result comes", () =>
      Effect.gen(function*() {
        const taskId = TaskMessage.makeTaskId()
        const e = yield* Effect.flip(TaskHandle.make(taskId, plain.name, "q", plain).result({ timeout: "20 millis" }))
        assert.strictEqual(e._tag, "ResultTimeout")
      }).pipe(Effect.provide(MemoryResultBackend.layer())))
  })
})
