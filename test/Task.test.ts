import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as Broker from "../src/Broker.js"
import * as Inbox from "../src/internal/inbox.js"
import { scheduleAsync, scheduleWith } from "../src/Producer.js"
import * as Task from "../src/Task.js"
import * as Taskiq from "../src/Taskiq.js"

/** The raw wire JSON of every message on the queue, read through a consumer as a worker would. */
const published = Effect.gen(function*() {
  const broker = yield* Broker.Broker
  const consumer = yield* broker.consumer({ blockMs: 20 })
  const deliveries = yield* consumer.read(10)
  return deliveries.map((d) => {
    assert.isTrue(Either.isRight(d.message), "the published message decodes")
    return JSON.parse(d.data!) as Record<string, any>
  })
})

const add = Task.make("math.add", (a: number, b: number) => Effect.succeed(a + b))

const when = Task.make(
  "calendar.when",
  (n: number, at: Date) => Effect.succeed(`${n}@${at.toISOString()}`),
  { args: Schema.mutable(Schema.Tuple(Schema.NumberFromString, Schema.Date)) }
)

describe("Task", () => {
  describe("kiq", () => {
    it.scoped("publishes a taskiq message with the task's name, a 32-hex id and the args", () =>
      Effect.gen(function*() {
        const handle = yield* add.kiq(1, 2)
        const [msg, ...rest] = yield* published
        assert.strictEqual(rest.length, 0)
        assert.strictEqual(msg!.task_name, "math.add")
        assert.match(msg!.task_id, /^[0-9a-f]{32}$/)
        assert.strictEqual(msg!.task_id, handle.taskId)
        assert.deepStrictEqual(msg!.args, [1, 2])
        assert.deepStrictEqual(msg!.kwargs, {})
        assert.deepStrictEqual(msg!.labels, {})
        assert.deepStrictEqual(msg!.labels_types, {})
        assert.strictEqual(handle.taskName, "math.add")
        assert.strictEqual(handle.queueName, "memory")
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("the handle names the broker's queue", () =>
      Effect.gen(function*() {
        const handle = yield* add.kiq(1, 2)
        assert.strictEqual(handle.queueName, "billing")
      }).pipe(Effect.provide(Taskiq.layerMemory({ queueName: "billing" }))))

    it.scoped("each submission gets its own id", () =>
      Effect.gen(function*() {
        const a = yield* add.kiq(1, 2)
        const b = yield* add.kiq(1, 2)
        assert.notStrictEqual(a.taskId, b.taskId)
        const ids = (yield* published).map((m) => m.task_id)
        assert.deepStrictEqual(ids, [a.taskId, b.taskId])
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("encodes the args with the args Schema", () =>
      Effect.gen(function*() {
        yield* when.kiq(5, new Date(Date.UTC(2024, 0, 2)))
        const [msg] = yield* published
        assert.deepStrictEqual(msg!.args, ["5", "2024-01-02T00:00:00.000Z"])
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("sends the task's own labels, typed for taskiq", () =>
      Effect.gen(function*() {
        const labelled = Task.make("labelled", () => Effect.void, { labels: { team: "core", priority: 1 } })
        yield* labelled.kiq()
        const [msg] = yield* published
        assert.deepStrictEqual(msg!.labels, { team: "core", priority: "1" })
        assert.deepStrictEqual(msg!.labels_types, { team: 3, priority: 2 })
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("args failing the args Schema are InvalidTask InvalidArguments, and nothing is published", () =>
      Effect.gen(function*() {
        const positive = Task.make("positive", (n: number) => Effect.succeed(n), {
          args: Schema.mutable(Schema.Tuple(Schema.Number.pipe(Schema.positive())))
        })
        const e = yield* Effect.flip(positive.kiq(-1))
        assert.strictEqual(e._tag, "InvalidTask")
        if (e._tag !== "InvalidTask") return
        assert.strictEqual(e.reason, "InvalidArguments")
        assert.strictEqual(e.taskName, "positive")
        assert.include(e.message, "positive")
        assert.strictEqual(yield* Effect.flatMap(Broker.Broker, (b) => b.size), 0)
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("a BigInt argument without an args Schema is InvalidTask NotSerializable", () =>
      Effect.gen(function*() {
        const big = Task.make("big", (n: bigint) => Effect.succeed(String(n)))
        const e = yield* Effect.flip(big.kiq(10n))
        assert.strictEqual(e._tag, "InvalidTask")
        if (e._tag !== "InvalidTask") return
        assert.strictEqual(e.reason, "NotSerializable")
        assert.strictEqual(e.taskName, "big")
        assert.include(e.detail, "Schema") // says what to do
        assert.strictEqual(yield* Effect.flatMap(Broker.Broker, (b) => b.size), 0)
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("a BigInt argument with an args Schema travels encoded", () =>
      Effect.gen(function*() {
        const big = Task.make("big", (n: bigint) => Effect.succeed(String(n)), {
          args: Schema.mutable(Schema.Tuple(Schema.BigInt))
        })
        yield* big.kiq(12345678901234567890n)
        const [msg] = yield* published
        assert.deepStrictEqual(msg!.args, ["12345678901234567890"])
      }).pipe(Effect.provide(Taskiq.layerMemory())))
  })

  describe("with this process's result inbox open", () => {
    it.scoped("kiq and kiqMany register their tasks before publishing (their waiters need no catch-up read) and ask for the push", () =>
      Effect.gen(function*() {
        yield* Effect.acquireRelease(Effect.sync(() => Inbox.track(1)), () => Effect.sync(() => Inbox.track(-1)))
        const before = performance.now()
        const one = yield* add.kiq(1, 2)
        const many = yield* add.kiqMany([[1, 1], [2, 2]])
        for (const h of [one, ...many]) assert.isAtLeast(Inbox.submittedAt(h.taskId) ?? -1, before, h.taskId)
        const messages = yield* published
        assert.deepStrictEqual(messages.map((m) => m.labels[Inbox.label]), [Inbox.channel, Inbox.channel, Inbox.channel])
        for (const h of [one, ...many]) Inbox.forget(h.taskId)
      }).pipe(Effect.provide(Taskiq.layerMemory())))
  })

  describe("scheduleAsync", () => {
    it.scoped("publishes like kiq", () =>
      Effect.gen(function*() {
        const handle = yield* scheduleAsync(when, 7, new Date(Date.UTC(2030, 5, 1)))
        const [msg] = yield* published
        assert.strictEqual(msg!.task_name, "calendar.when")
        assert.strictEqual(msg!.task_id, handle.taskId)
        assert.match(handle.taskId, /^[0-9a-f]{32}$/)
        assert.deepStrictEqual(msg!.args, ["7", "2030-06-01T00:00:00.000Z"])
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("fails with InvalidArguments like kiq", () =>
      Effect.gen(function*() {
        const e = yield* Effect.flip(scheduleAsync(when, 1, new Date(Number.NaN)))
        assert.strictEqual(e._tag, "InvalidTask")
        if (e._tag === "InvalidTask") assert.strictEqual(e.reason, "InvalidArguments")
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("scheduleWith merges labels over the task's own, typed for taskiq", () =>
      Effect.gen(function*() {
        const labelled = Task.make("labelled", (x: number) => Effect.succeed(x), {
          labels: { team: "core", priority: 1, ratio: 0.5 }
        })
        yield* scheduleWith(labelled, { labels: { priority: 5, urgent: true, raw: new Uint8Array([0x68, 0x69]) } }, 3)
        const [msg] = yield* published
        assert.deepStrictEqual(msg!.args, [3])
        assert.deepStrictEqual(msg!.labels, { team: "core", priority: "5", ratio: "0.5", urgent: "True", raw: "aGk=" })
        assert.deepStrictEqual(msg!.labels_types, { team: 3, priority: 2, ratio: 4, urgent: 5, raw: 6 })
        // the task's own labels are left as they were
        assert.deepStrictEqual(labelled.labels, { team: "core", priority: 1, ratio: 0.5 })
      }).pipe(Effect.provide(Taskiq.layerMemory())))

    it.scoped("scheduleWith sends kwargs", () =>
      Effect.gen(function*() {
        yield* scheduleWith(add, { kwargs: { scale: 2 } }, 1, 2)
        const [msg] = yield* published
        assert.deepStrictEqual(msg!.args, [1, 2])
        assert.deepStrictEqual(msg!.kwargs, { scale: 2 })
      }).pipe(Effect.provide(Taskiq.layerMemory())))
  })

  describe("isTask", () => {
    it("recognises declared tasks and nothing else", () => {
      assert.isTrue(Task.isTask(add))
      assert.isTrue(Task.isTask(when))
      assert.isFalse(Task.isTask(async (a: number) => a))
      assert.isFalse(Task.isTask({ name: "math.add", handler: () => 1, kiq: () => undefined }))
      assert.isFalse(Task.isTask(null))
      assert.isFalse(Task.isTask(undefined))
      assert.isFalse(Task.isTask("math.add"))
    })
  })

  describe("make", () => {
    it("keeps the name, handler, timeout and labels", () => {
      const handler = (a: number) => Effect.succeed(a)
      const t = Task.make("t", handler, { timeout: "2 seconds", labels: { a: "b" } })
      assert.strictEqual(t.name, "t")
      assert.strictEqual(t.handler, handler)
      assert.isDefined(t.timeout)
      assert.strictEqual(Duration.toMillis(t.timeout!), 2000)
      assert.deepStrictEqual(t.labels, { a: "b" })
      assert.isUndefined(add.timeout)
      assert.isUndefined(add.decodeArgs)
      assert.isDefined(when.decodeArgs)
    })
  })
})
