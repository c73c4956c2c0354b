import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import { Broker, type Delivery } from "../src/Broker.js"
import * as MemoryBroker from "../src/Broker/Memory.js"
import * as RedisBroker from "../src/Broker/Redis.js"
import * as RedisConnection from "../src/RedisConnection.js"
import { ResultBackend } from "../src/ResultBackend.js"
import * as TaskMessage from "../src/TaskMessage.js"
import * as TaskResult from "../src/TaskResult.js"
import * as Taskiq from "../src/Taskiq.js"
import { cleanupKeys, layerRedis, names, rawClient, redisUrl, uniqueName } from "./utils/redis.js"
import { privateRedis } from "./utils/redisServer.js"

const message = (n: unknown): TaskMessage.TaskMessage => ({
  taskId: TaskMessage.makeTaskId(),
  taskName: "test.n",
  labels: {},
  args: [n],
  kwargs: {}
})

const argOf = (d: Delivery) => Either.getOrThrow(d.message).args[0]

/** Reads until `count` deliveries arrived or `tries` reads came back short. */
const readN = (consumer: { read: (max: number) => Effect.Effect<ReadonlyArray<Delivery>, unknown> }, count: number, tries = 10) =>
  Effect.gen(function*() {
    const out: Array<Delivery> = []
    for (let i = 0; i < tries && out.length < count; i++) out.push(...yield* consumer.read(count - out.length))
    return out
  })

const redisLayer = (root: string, options: RedisBroker.RedisBrokerOptions = {}) =>
  RedisBroker.layer({ queueName: names(root).queueName, ...options }).pipe(
    Layer.provide(RedisConnection.layer({ url: redisUrl })),
    Layer.provideMerge(Layer.scopedDiscard(cleanupKeys(root))),
    Layer.orDie
  )

/** The Redis broker for the rest of the test's scope. */
const brokerIn = (root: string, options: RedisBroker.RedisBrokerOptions = {}) =>
  Effect.map(Layer.build(redisLayer(root, options)), (ctx) => Context.get(ctx, Broker))

const errorOf = (d: Delivery) => Either.isLeft(d.message) ? d.message.left : undefined

const contract = (label: string, makeLayer: (root: string, options?: { maxMessageBytes?: number }) => Layer.Layer<Broker>) =>
  describe(`Broker contract: ${label}`, () => {
    const withBroker = <A, E>(f: (broker: Broker["Type"]) => Effect.Effect<A, E, Scope.Scope>, options?: { maxMessageBytes?: number }) =>
      Effect.flatMap(Broker, f).pipe(Effect.provide(makeLayer(uniqueName(`broker-${label}`), options)))

    it.scoped("delivers a published message once, decoded, with deliveryCount 1; ack removes it", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          const sent = message(1)
          yield* broker.publish(sent)
          assert.strictEqual(yield* broker.size, 1)
          const consumer = yield* broker.consumer({ blockMs: 100 })
          const [d, ...rest] = yield* readN(consumer, 1)
          assert.strictEqual(rest.length, 0)
          assert.strictEqual(d!.deliveryCount, 1)
          assert.deepStrictEqual(Either.getOrThrow(d!.message), { ...sent, extra: undefined })
          assert.strictEqual((yield* consumer.read(5)).length, 0, "nothing else to read")
          yield* consumer.ack(d!)
          assert.strictEqual(yield* broker.size, 0)
        })
      ))

    it.scoped("never hands out more than asked for (bounded prefetch)", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          for (let i = 0; i < 10; i++) yield* broker.publish(message(i))
          const consumer = yield* broker.consumer({ blockMs: 100 })
          const first = yield* consumer.read(3)
          assert.strictEqual(first.length, 3)
          assert.deepStrictEqual(first.map(argOf), [0, 1, 2])
          const rest = yield* readN(consumer, 7)
          assert.deepStrictEqual(rest.map(argOf), [3, 4, 5, 6, 7, 8, 9])
        })
      ))

    it.scoped("a released message goes to the next reader at once, with its delivery counted", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          yield* broker.publish(message(7))
          const a = yield* broker.consumer({ blockMs: 100, leaseMs: 60_000 })
          const b = yield* broker.consumer({ blockMs: 100, leaseMs: 60_000 })
          const [d] = yield* readN(a, 1)
          assert.strictEqual((yield* b.read(1)).length, 0, "held by a")
          yield* a.release([d!])
          const [again] = yield* readN(b, 1)
          assert.strictEqual(argOf(again!), 7)
          assert.strictEqual(again!.deliveryCount, 2)
        })
      ))

    it.live("a live consumer keeps its lease; closing it hands its messages back", () =>
      Effect.scoped(withBroker((broker) =>
        Effect.gen(function*() {
          yield* broker.publish(message(1))
          const scopeA = yield* Scope.make()
          const a = yield* broker.consumer({ blockMs: 50, leaseMs: 300 }).pipe(Scope.extend(scopeA))
          const b = yield* broker.consumer({ blockMs: 50, leaseMs: 300 })
          assert.strictEqual((yield* readN(a, 1)).length, 1)
          // Three leases long: a renews, so b must not get it.
          const stolen = yield* readN(b, 1, 18)
          assert.strictEqual(stolen.length, 0)
          yield* Scope.close(scopeA, Exit.void)
          const [back] = yield* readN(b, 1)
          assert.strictEqual(back?.deliveryCount, 2)
        })
      )))

    it.scoped("dead-lettering removes the message and records why", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          const sent = message(3)
          yield* broker.publish(sent)
          const consumer = yield* broker.consumer({ blockMs: 100 })
          const [d] = yield* readN(consumer, 1)
          yield* consumer.deadLetter(d!, "poison: testing")
          assert.strictEqual(yield* broker.size, 0)
          const dead = yield* broker.deadLetters()
          assert.strictEqual(dead.length, 1)
          assert.strictEqual(dead[0]!.reason, "poison: testing")
          assert.strictEqual(dead[0]!.taskId, sent.taskId)
          assert.strictEqual(dead[0]!.deliveries, 1)
          assert.strictEqual(JSON.parse(dead[0]!.data).task_id, sent.taskId)
        })
      ))

    /** Publishes messages 1..n, reads them and dead-letters each (reason `poison n`), in order. */
    const deadLetterN = (broker: Broker["Type"], n: number) =>
      Effect.gen(function*() {
        const sent = Array.from({ length: n }, (_, i) => message(i + 1))
        for (const m of sent) yield* broker.publish(m)
        const consumer = yield* broker.consumer({ blockMs: 100 })
        const deliveries = yield* readN(consumer, n)
        assert.strictEqual(deliveries.length, n)
        for (const d of deliveries) yield* consumer.deadLetter(d, `poison ${argOf(d)}`)
        const dead = yield* broker.deadLetters()
        assert.deepStrictEqual(dead.map((d) => d.taskId), sent.map((m) => m.taskId))
        return { consumer, dead }
      })

    it.scoped("requeueDeadLetters by id moves that one back and leaves the others; unknown ids are skipped", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          const { dead } = yield* deadLetterN(broker, 3)
          assert.strictEqual(yield* broker.size, 0)
          assert.strictEqual(yield* broker.requeueDeadLetters({ ids: [dead[1]!.id] }), 1)
          assert.deepStrictEqual((yield* broker.deadLetters()).map((d) => d.id), [dead[0]!.id, dead[2]!.id])
          assert.strictEqual(yield* broker.size, 1)
          assert.strictEqual(yield* broker.requeueDeadLetters({ ids: [dead[1]!.id, "1-1", "not-an-id"] }), 0, "already moved")
          assert.strictEqual(yield* broker.requeueDeadLetters({ ids: [] }), 0, "an empty id list selects none")
          assert.strictEqual((yield* broker.deadLetters()).length, 2)
          assert.strictEqual(yield* broker.size, 1)
        })
      ))

    it.scoped("a requeued message is delivered again, its delivery count starting over, and can be acked", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          const { consumer, dead } = yield* deadLetterN(broker, 1)
          assert.strictEqual(yield* broker.requeueDeadLetters(), 1)
          const [d, ...rest] = yield* readN(consumer, 1)
          assert.strictEqual(rest.length, 0)
          assert.strictEqual(argOf(d!), 1)
          assert.strictEqual(Either.getOrThrow(d!.message).taskId, dead[0]!.taskId)
          assert.strictEqual(d!.data, dead[0]!.data, "the original payload")
          assert.strictEqual(d!.deliveryCount, 1)
          yield* consumer.ack(d!)
          assert.strictEqual(yield* broker.size, 0)
          assert.strictEqual((yield* broker.deadLetters()).length, 0)
        })
      ))

    it.scoped("requeueDeadLetters with no ids moves the oldest `count`, or all of them, in order", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          const { consumer, dead } = yield* deadLetterN(broker, 4)
          assert.strictEqual(yield* broker.requeueDeadLetters({ count: 1 }), 1)
          assert.deepStrictEqual((yield* broker.deadLetters()).map((d) => d.id), dead.slice(1).map((d) => d.id))
          assert.strictEqual(yield* broker.requeueDeadLetters(), 3)
          assert.strictEqual((yield* broker.deadLetters()).length, 0)
          assert.strictEqual(yield* broker.size, 4)
          assert.strictEqual(yield* broker.requeueDeadLetters(), 0, "nothing left")
          const again = yield* readN(consumer, 4)
          assert.deepStrictEqual(again.map(argOf), [1, 2, 3, 4])
        })
      ))

    it.scoped("purgeDeadLetters deletes by id, the oldest `count`, or all, and says how many", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          const { dead } = yield* deadLetterN(broker, 5)
          assert.strictEqual(yield* broker.purgeDeadLetters({ ids: [dead[3]!.id, "1-1"] }), 1)
          assert.strictEqual(yield* broker.purgeDeadLetters({ count: 2 }), 2)
          assert.deepStrictEqual((yield* broker.deadLetters()).map((d) => d.id), [dead[2]!.id, dead[4]!.id])
          assert.strictEqual(yield* broker.purgeDeadLetters(), 2)
          assert.strictEqual((yield* broker.deadLetters()).length, 0)
          assert.strictEqual(yield* broker.purgeDeadLetters(), 0)
          assert.strictEqual(yield* broker.size, 0, "nothing went back to the queue")
        })
      ))

    it.scoped("an undecodable payload is delivered with its decode error, not dropped", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          yield* broker.publishRaw("this is not json")
          yield* broker.publishRaw(JSON.stringify({ task_id: "a".repeat(32), task_name: 5 }))
          const consumer = yield* broker.consumer({ blockMs: 100 })
          const [bad, shape] = yield* readN(consumer, 2)
          assert.isTrue(Either.isLeft(bad!.message))
          assert.strictEqual(Either.flip(bad!.message).pipe(Either.getOrThrow).reason, "InvalidJson")
          const shapeError = Either.flip(shape!.message).pipe(Either.getOrThrow)
          assert.strictEqual(shapeError.reason, "InvalidShape")
          assert.strictEqual(shapeError.taskId, "a".repeat(32), "the id is kept when readable")
        })
      ))

    it.live("a delayed message is delivered after its delay, not before", () =>
      Effect.scoped(withBroker((broker) =>
        Effect.gen(function*() {
          const consumer = yield* broker.consumer({ blockMs: 50 })
          const started = Date.now()
          yield* broker.publish(message(9), { delayMs: 300 })
          assert.strictEqual(yield* broker.delayedSize, 1)
          assert.strictEqual((yield* consumer.read(1)).length, 0, "not yet due")
          const [d] = yield* readN(consumer, 1, 60)
          assert.strictEqual(argOf(d!), 9)
          assert.isAtLeast(Date.now() - started, 290)
          assert.strictEqual(yield* broker.delayedSize, 0)
        })
      )))

    it.scoped("higher priorities are read first; every eighth read starts at low, so nothing starves", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          for (const p of ["low", "normal", "high"] as const) {
            for (let i = 0; i < 3; i++) yield* broker.publish(message(`${p}${i}`), { priority: p })
          }
          const consumer = yield* broker.consumer({ blockMs: 50 })
          const first = yield* consumer.read(4)
          assert.deepStrictEqual(first.map(argOf), ["high0", "high1", "high2", "normal0"])
          assert.deepStrictEqual(first.map((d) => d.priority), ["high", "high", "high", "normal"])
          yield* consumer.ackMany(first)
          assert.deepStrictEqual((yield* consumer.read(5)).map(argOf), ["normal1", "normal2", "low0", "low1", "low2"])
          // Under a steady supply of high-priority work, reads 4 and 8 of every 8 start lower (this is read 3 of 8).
          for (let i = 0; i < 20; i++) yield* broker.publish(message(`h${i}`), { priority: "high" })
          for (let i = 0; i < 3; i++) yield* broker.publish(message(`n${i}`))
          for (let i = 0; i < 3; i++) yield* broker.publish(message(`l${i}`), { priority: "low" })
          const order: Array<unknown> = []
          for (let i = 0; i < 8; i++) order.push(...(yield* consumer.read(1)).map(argOf))
          assert.deepStrictEqual(order, ["h0", "n0", "h1", "h2", "h3", "l0", "h4", "h5"])
        })
      ))

    it.scoped("a message's priority comes from its `priority` label; dead letters keep it and are requeued with it", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          yield* broker.publish(message("plain"))
          yield* broker.publish({ ...message("labelled"), labels: { priority: "high" } })
          const consumer = yield* broker.consumer({ blockMs: 50 })
          const [d] = yield* consumer.read(1)
          assert.strictEqual(argOf(d!), "labelled")
          assert.strictEqual(d!.priority, "high")
          yield* consumer.deadLetter(d!, "testing")
          const [dead] = yield* broker.deadLetters()
          assert.strictEqual(dead!.priority, "high")
          assert.strictEqual(yield* broker.requeueDeadLetters(), 1)
          const [again] = yield* consumer.read(1)
          assert.strictEqual(argOf(again!), "labelled")
          assert.strictEqual(again!.priority, "high")
        })
      ))

    it.live("a delayed message keeps its priority", () =>
      Effect.scoped(withBroker((broker) =>
        Effect.gen(function*() {
          const consumer = yield* broker.consumer({ blockMs: 50 })
          yield* broker.publish(message("normal"), { delayMs: 50 })
          yield* broker.publish(message("high"), { delayMs: 50, priority: "high" })
          yield* broker.publish(message("low"), { delayMs: 50, priority: "low" })
          yield* Effect.sleep("200 millis")
          const got = yield* readN(consumer, 3, 60)
          assert.deepStrictEqual(got.map((d) => [argOf(d), d.priority]), [["high", "high"], ["normal", "normal"], ["low", "low"]])
        })
      )))

    it.live("an idempotency key publishes once: later publishes return the holder's task id until it is released or expires", () =>
      Effect.scoped(withBroker((broker) =>
        Effect.gen(function*() {
          const first = message(1)
          const second = message(2)
          const idem = (taskId: string, ttlMs = 60_000) => ({ idempotency: { key: "order-7", taskId, ttlMs } })
          assert.isUndefined(yield* broker.publish(first, idem(first.taskId)))
          assert.strictEqual(yield* broker.publish(second, idem(second.taskId)), first.taskId)
          assert.strictEqual(yield* broker.publish(second, { ...idem(second.taskId), delayMs: 10 }), first.taskId)
          assert.strictEqual(yield* broker.size, 1)
          assert.strictEqual(yield* broker.delayedSize, 0)
          // Only the holder lets the key go.
          yield* broker.releaseIdempotencyKeys([{ key: "order-7", taskId: second.taskId }])
          assert.strictEqual(yield* broker.publish(second, idem(second.taskId)), first.taskId)
          yield* broker.releaseIdempotencyKeys([{ key: "order-7", taskId: first.taskId }])
          assert.isUndefined(yield* broker.publish(second, idem(second.taskId, 100)))
          assert.strictEqual(yield* broker.size, 2)
          yield* Effect.sleep("200 millis")
          const third = message(3)
          assert.isUndefined(yield* broker.publish(third, idem(third.taskId)), "the key expired")
        })
      )))

    it.scoped("publishManyRaw publishes many in order, of one priority; one too large and none is published", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          yield* broker.publishManyRaw(Array.from({ length: 1500 }, (_, i) => TaskMessage.encodeJson(message(i))))
          yield* broker.publishManyRaw([TaskMessage.encodeJson(message("urgent"))], "high")
          assert.strictEqual(yield* broker.size, 1501)
          const consumer = yield* broker.consumer({ blockMs: 50 })
          const got = yield* readN(consumer, 1501, 40)
          assert.deepStrictEqual(got.map(argOf), ["urgent", ...Array.from({ length: 1500 }, (_, i) => i)])
          yield* consumer.ackMany(got)
          const error = yield* Effect.flip(broker.publishManyRaw([TaskMessage.encodeJson(message(1)), "x".repeat(2_000)]))
          assert.strictEqual(error.reason, "MessageTooLarge")
          assert.strictEqual(yield* broker.size, 0, "none of the batch was published")
        }), { maxMessageBytes: 1_000 }))

    it.live("publishManyRaw with a delay holds the whole batch until it is due, then delivers it in its priority", () =>
      Effect.scoped(withBroker((broker) =>
        Effect.gen(function*() {
          const consumer = yield* broker.consumer({ blockMs: 50 })
          const started = Date.now()
          yield* broker.publishManyRaw(Array.from({ length: 1200 }, (_, i) => TaskMessage.encodeJson(message(i))), "low", 300)
          yield* broker.publishManyRaw([TaskMessage.encodeJson(message("now"))], "low")
          assert.strictEqual(yield* broker.delayedSize, 1200)
          assert.deepStrictEqual((yield* consumer.read(10)).map(argOf), ["now"], "the rest is not yet due")
          const got = yield* readN(consumer, 1200, 80)
          assert.isAtLeast(Date.now() - started, 290)
          assert.deepStrictEqual(got.map(argOf).sort((a, b) => Number(a) - Number(b)), Array.from({ length: 1200 }, (_, i) => i))
          assert.isTrue(got.every((d) => d.priority === "low"))
          assert.strictEqual(yield* broker.delayedSize, 0)
        })
      )))

    it.scoped("refuses a message over maxMessageBytes with a typed error", () =>
      withBroker((broker) =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(broker.publishRaw("x".repeat(2_000)))
          assert.strictEqual(error._tag, "BrokerError")
          assert.strictEqual(error.reason, "MessageTooLarge")
          assert.strictEqual(yield* broker.size, 0)
        }), { maxMessageBytes: 1_000 }))
  })

contract("memory", (root, options) => MemoryBroker.layer({ queueName: root, ...options }))

describe("Memory broker", () => {
  const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length

  it.scoped("a read woken by a publish leaves no timer behind (each would hold its finished wait for blockMs)", () =>
    Effect.gen(function*() {
      const broker = yield* Effect.provide(Broker, MemoryBroker.layer({ queueName: uniqueName("memory-timers") }))
      const consumer = yield* broker.consumer({ blockMs: 60_000 })
      const before = timeouts()
      for (let i = 0; i < 50; i++) {
        const reading = yield* Effect.fork(consumer.read(1))
        yield* Effect.yieldNow()
        yield* broker.publish(message(i))
        const got = yield* Fiber.join(reading)
        assert.strictEqual(got.length, 1)
        yield* consumer.ackMany(got)
      }
      // Without clearing, 50 one-minute timers would still be pending here.
      assert.isAtMost(timeouts() - before, 2)
    }))
})
contract("redis", (root, options) => redisLayer(root, options))

describe("Redis broker: signing configuration", () => {
  const keysFrom = (env: Record<string, string>) =>
    Effect.withConfigProvider(RedisBroker.signingKeysConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.effect("TASKIQ_SIGNING_KEY signs; TASKIQ_SIGNING_KEYS_ACCEPTED adds keys; accepted keys alone are an error", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* keysFrom({}), [])
      const keys = yield* keysFrom({ TASKIQ_SIGNING_KEY: "new", TASKIQ_SIGNING_KEYS_ACCEPTED: "old, older," })
      assert.deepStrictEqual(keys.map(Redacted.value), ["new", "old", "older"])
      assert.notInclude(String(keys[0]), "new", "keys print redacted")
      const error = yield* Effect.flip(keysFrom({ TASKIQ_SIGNING_KEYS_ACCEPTED: "old" }))
      assert.include(String(error), "without TASKIQ_SIGNING_KEY")
    }))
})

describe("Redis broker: signed messages", () => {
  it.live("with signing keys, signed messages (now, delayed, of any priority) are delivered; unsigned and forged ones are refused", () =>
    Effect.scoped(Effect.gen(function*() {
      const root = uniqueName("signed")
      const { queueName } = names(root)
      const raw = yield* rawClient()
      const broker = yield* brokerIn(root, { signingKeys: [Redacted.make("k-current")] })
      yield* broker.publish(message("now"))
      yield* broker.publish(message("later"), { delayMs: 20, priority: "high" })
      yield* broker.publish(message("keyed"), { idempotency: { key: "x", taskId: "t-x", ttlMs: 10_000 } })
      const [entry] = yield* Effect.promise(() => raw.xrange(queueName, "-", "+"))
      assert.match(entry![1][3]!, /^[0-9a-f]{64}$/, "the sig field beside data")
      yield* Effect.promise(() => raw.xadd(queueName, "*", "data", TaskMessage.encodeJson(message("unsigned"))))
      yield* Effect.promise(() => raw.xadd(queueName, "*", "data", TaskMessage.encodeJson(message("forged")), "sig", "ab".repeat(32)))
      const consumer = yield* broker.consumer({ blockMs: 50 })
      yield* Effect.sleep("100 millis")
      const got = yield* readN(consumer, 5, 40)
      const ok = got.filter((d) => Either.isRight(d.message)).map(argOf).sort()
      assert.deepStrictEqual(ok, ["keyed", "later", "now"])
      const refused = got.filter((d) => Either.isLeft(d.message)).map((d) => errorOf(d)!)
      assert.deepStrictEqual(refused.map((e) => e.reason).sort(), ["BadSignature", "Unsigned"])
      assert.isTrue(refused.every((e) => e.taskId === undefined), "an unverified message's task id is not trusted")
    })))

  it.scoped("key rotation: a consumer accepting old and new keys takes both; one with only the old key refuses the new", () =>
    Effect.gen(function*() {
      const root = uniqueName("rotate")
      const oldProducer = yield* brokerIn(root, { signingKeys: ["k-old"] })
      const newProducer = yield* brokerIn(root, { signingKeys: ["k-new", "k-old"] })
      yield* oldProducer.publish(message("old"))
      yield* newProducer.publish(message("new"))
      const rotated = yield* (yield* brokerIn(root, { signingKeys: ["k-new", "k-old"] })).consumer({ blockMs: 50 })
      const both = yield* readN(rotated, 2)
      assert.deepStrictEqual(both.map(argOf), ["old", "new"])
      yield* rotated.ackMany(both)
      yield* newProducer.publish(message("new2"))
      const stale = yield* (yield* brokerIn(root, { signingKeys: ["k-old"] })).consumer({ blockMs: 50 })
      const [d] = yield* readN(stale, 1)
      assert.strictEqual(errorOf(d!)?.reason, "BadSignature")
    }))

  it.scoped("a dead-lettered signed message keeps its signature, so a requeued one is accepted", () =>
    Effect.gen(function*() {
      const root = uniqueName("signed-dlq")
      const broker = yield* brokerIn(root, { signingKeys: ["k"] })
      yield* broker.publish(message("again"))
      const consumer = yield* broker.consumer({ blockMs: 50 })
      const [d] = yield* readN(consumer, 1)
      yield* consumer.deadLetter(d!, "testing")
      assert.strictEqual(yield* broker.requeueDeadLetters(), 1)
      const [again] = yield* readN(consumer, 1)
      assert.strictEqual(argOf(again!), "again")
    }))

  it.scoped("an entry over maxMessageBytes written by another producer is refused as TooLarge", () =>
    Effect.gen(function*() {
      const root = uniqueName("too-large")
      const raw = yield* rawClient()
      const broker = yield* brokerIn(root, { maxMessageBytes: 1_000 })
      yield* Effect.promise(() => raw.xadd(names(root).queueName, "*", "data", TaskMessage.encodeJson(message("x".repeat(2_000)))))
      const [d] = yield* readN(yield* broker.consumer({ blockMs: 50 }), 1)
      assert.strictEqual(errorOf(d!)?.reason, "TooLarge")
    }))
})

// A broker and result backend on a private Redis, so that its command statistics count this test's calls alone.
const onPrivateRedis = Effect.gen(function*() {
  const redis = yield* privateRedis()
  const raw = yield* rawClient(redis.url)
  const ctx = yield* Layer.build(Taskiq.layerRedis({ url: redis.url, queueName: "q", resultPrefix: "r" }))
  // How many times Redis ran these commands so far (those a script runs count too).
  const count = (...commands: ReadonlyArray<string>) =>
    Effect.promise(async () => {
      const stats = await raw.info("commandstats")
      return commands.reduce((sum, c) => sum + Number(new RegExp(`cmdstat_${c}:calls=(\\d+)`).exec(stats)?.[1] ?? 0), 0)
    })
  // Watches (MONITOR) the scripts this test runs: `sizes()` gives how many messages each one carried so far, from its
  // arguments, EVAL(SHA) <script or its sha> <numkeys> <key> [<more args>] <signed> <message…>, here with numkeys 1.
  const scriptSizes = Effect.gen(function*() {
    const watcher = yield* rawClient(redis.url)
    const monitor = yield* Effect.acquireRelease(Effect.promise(() => watcher.monitor()), (m) => Effect.sync(() => m.disconnect()))
    const seen: Array<number> = []
    monitor.on("monitor", (_time: string, args: ReadonlyArray<string>) => {
      const command = args[0]?.toLowerCase()
      if (command === "evalsha" || command === "eval") seen.push(args.length - 5)
    })
    // A PING sent after the scripts comes back after MONITOR has passed them on.
    return () => Effect.promise(() => raw.ping().then(() => new Promise((resolve) => setTimeout(resolve, 50)))).pipe(Effect.map(() => [...seen]))
  })
  return { raw, broker: Context.get(ctx, Broker), backend: Context.get(ctx, ResultBackend), count, scriptSizes }
})

// The first argument of every task message in `stream`, in stream order.
const streamArgs = (raw: { xrange: (key: string, start: string, end: string) => Promise<Array<[string, Array<string>]>> }, stream: string) =>
  Effect.promise(() => raw.xrange(stream, "-", "+")).pipe(
    Effect.map((entries) => entries.map(([, fields]) => Either.getOrThrow(TaskMessage.decodeJson(fields[1]!)).args[0]))
  )

describe("Redis broker", () => {
  it.scoped("concurrent publishes go out together in one round trip, in order; an awaited one alone; a failed round trip fails each", () =>
    Effect.gen(function*() {
      const { broker, count, raw } = yield* onPrivateRedis
      const calls = () => Effect.zipWith(count("evalsha", "eval"), count("xadd"), (scripts, xadds) => ({ scripts, xadds }))
      const before = yield* calls()
      yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => i), (i) => broker.publish(message(i)), { concurrency: "unbounded", discard: true })
      const after = yield* calls()
      assert.strictEqual(after.xadds - before.xadds, 200)
      assert.isAtLeast(after.scripts - before.scripts, 1)
      assert.isAtMost(after.scripts - before.scripts, 3, "200 concurrent publishes in at most 3 round trips")
      const entries = yield* Effect.promise(() => raw.xrange("q", "-", "+"))
      assert.deepStrictEqual(
        entries.map(([, fields]) => Either.getOrThrow(TaskMessage.decodeJson(fields[1]!)).args[0]),
        Array.from({ length: 200 }, (_, i) => i)
      )
      const alone = yield* calls()
      for (let i = 0; i < 3; i++) yield* broker.publish(message(i))
      const done = yield* calls()
      assert.deepStrictEqual({ scripts: done.scripts - alone.scripts, xadds: done.xadds - alone.xadds }, { scripts: 0, xadds: 3 }, "an awaited publish is a plain XADD")
      // Redis refuses every write (out of memory): each publish of the batch fails with a typed error.
      yield* Effect.promise(() => raw.config("SET", "maxmemory", "1"))
      const failed = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) => Effect.flip(broker.publish(message(i))), { concurrency: "unbounded" })
      assert.deepStrictEqual(failed.map((e) => (e as { reason?: string }).reason), Array.from({ length: 10 }, () => "Publish"))
      assert.include(failed[0]!.message, "OOM")
    }))

  it.scopedLive("submissions made together go out in scripts of at most 256 messages each, in order", () =>
    Effect.gen(function*() {
      const { broker, raw, scriptSizes } = yield* onPrivateRedis
      const sizes = yield* scriptSizes
      // 600 submissions in one turn of the event loop, as a burst of requests would make them.
      const runtime = yield* Effect.runtime<never>()
      const fibers = Array.from({ length: 600 }, (_, i) => Runtime.runFork(runtime, broker.publish(message(i)), { immediate: true }))
      yield* Fiber.joinAll(fibers)
      assert.deepStrictEqual(yield* sizes(), [256, 256, 88])
      assert.deepStrictEqual(yield* streamArgs(raw, "q"), Array.from({ length: 600 }, (_, i) => i))
    }))

  it.scopedLive("a bulk publish goes out in scripts of at most 256 messages each, in order, delayed or not", () =>
    Effect.gen(function*() {
      const { broker, raw, scriptSizes } = yield* onPrivateRedis
      const sizes = yield* scriptSizes
      yield* broker.publishManyRaw(Array.from({ length: 1000 }, (_, i) => TaskMessage.encodeJson(message(i))))
      assert.deepStrictEqual(yield* sizes(), [256, 256, 256, 232])
      assert.deepStrictEqual(yield* streamArgs(raw, "q"), Array.from({ length: 1000 }, (_, i) => i))
      // Delayed: publish_many_later.lua takes the delay, the wake channel and the priority prefix before the flag.
      yield* broker.publishManyRaw(Array.from({ length: 300 }, (_, i) => TaskMessage.encodeJson(message(i))), "normal", 60_000)
      assert.deepStrictEqual((yield* sizes()).slice(4).map((n) => n - 3), [256, 44])
      assert.strictEqual(yield* Effect.promise(() => raw.zcard("q:delayed")), 300)
    }))

  it.scopedLive("a consumer that read fewer messages than it asked for waits with one blocking read, not a read that finds nothing first", () =>
    Effect.gen(function*() {
      const { broker, count } = yield* onPrivateRedis
      const consumer = yield* broker.consumer({ blockMs: 2_000 })
      const reads = () => count("xreadgroup")
      yield* broker.publish(message(1))
      const first = yield* consumer.read(4)
      assert.deepStrictEqual(first.map(argOf), [1])
      const before = yield* reads()
      // The queue is empty now: the next read should block at once and wake with the next message.
      const next = yield* Effect.fork(consumer.read(4))
      yield* Effect.sleep("100 millis")
      yield* broker.publish(message(2))
      const second = yield* Fiber.join(next)
      assert.deepStrictEqual(second.map(argOf), [2])
      assert.strictEqual((yield* reads()) - before, 1, "one XREADGROUP for the second message")
    }))

  it.scoped("while no high or low priority message exists, completing a batch reads ahead from the normal stream alone", () =>
    Effect.gen(function*() {
      const { backend, broker, count } = yield* onPrivateRedis
      const reads = () => count("xreadgroup")
      const consumer = yield* broker.consumer({ blockMs: 50 })
      const complete = (deliveries: ReadonlyArray<Delivery>) =>
        consumer.ackWithResults!(
          deliveries.map((delivery) => ({ delivery, taskId: Either.getOrThrow(delivery.message).taskId, result: TaskResult.succeed(argOf(delivery), 0) })),
          backend.redisStore!,
          1
        )
      for (const i of [1, 2, 3]) yield* broker.publish(message(i))
      const first = yield* readN(consumer, 1)
      const before = yield* reads()
      const second = yield* complete(first)
      assert.deepStrictEqual(second!.map(argOf), [2])
      assert.strictEqual((yield* reads()) - before, 1, "one XREADGROUP, on the normal stream")
      // A high priority message waits: the next read-ahead looks at every stream, the high one first.
      yield* broker.publish(message(4), { priority: "high" })
      const third = yield* complete(second!)
      assert.deepStrictEqual(third!.map((d) => [argOf(d), d.priority]), [[4, "high"]])
    }))

  it.scoped("runs a task published before any consumer group existed (group created at id 0)", () =>
    Effect.gen(function*() {
      const root = uniqueName("group0")
      const { queueName } = names(root)
      const raw = yield* rawClient()
      yield* cleanupKeys(root)
      yield* Effect.promise(() => raw.xadd(queueName, "*", "data", TaskMessage.encodeJson(message(42))))
      const broker = yield* brokerIn(root)
      const consumer = yield* broker.consumer({ blockMs: 100 })
      const [d] = yield* readN(consumer, 1)
      assert.strictEqual(argOf(d!), 42)
    }))

  it.scoped("ackWithResults stores the results, acks, and reads ahead, in one script — and declines a store on another connection", () =>
    Effect.gen(function*() {
      const root = uniqueName("fused")
      const { queueName, resultPrefix } = names(root)
      const raw = yield* rawClient()
      const ctx = yield* Layer.build(layerRedis(root))
      const broker = Context.get(ctx, Broker)
      const backend = Context.get(ctx, ResultBackend)
      const elsewhere = Context.get(yield* Layer.build(layerRedis(root)), ResultBackend)
      yield* broker.publish(message(1))
      yield* broker.publish(message(2), { priority: "high" })
      const consumer = yield* broker.consumer({ blockMs: 50 })
      const got = yield* readN(consumer, 2)
      const batch = got.map((delivery) => ({
        delivery,
        taskId: Either.getOrThrow(delivery.message).taskId,
        result: TaskResult.succeed(argOf(delivery), 0)
      }))
      assert.isUndefined(yield* consumer.ackWithResults!(batch, elsewhere.redisStore!), "another connection: not fused")
      assert.strictEqual(yield* broker.size, 2)
      yield* broker.publish(message(3))
      yield* broker.publish(message(4), { priority: "high" })
      yield* broker.publish(message(5))
      // The same script reads ahead for the freed slots: two, the high-priority one first.
      const next = yield* consumer.ackWithResults!(batch, backend.redisStore!, 2)
      assert.deepStrictEqual(next!.map((d) => [argOf(d), d.priority]), [[4, "high"], [3, "normal"]])
      assert.strictEqual(yield* broker.size, 3, "the batch is gone; the read-ahead ones and message 5 are not")
      for (const c of batch) {
        const stored = yield* Effect.promise(() => raw.get(`${resultPrefix}:${c.taskId}`))
        assert.strictEqual(JSON.parse(stored!).return_value, argOf(c.delivery))
      }
      const pending = yield* Effect.promise(() => raw.xpending(queueName, "taskiq") as Promise<[number]>)
      assert.strictEqual(pending[0], 1, "of the normal stream, only the message read ahead is pending")
    }))

  it.scopedLive("a consumer kept busy by read-ahead still reclaims what a dead consumer left, before its backlog is done", () =>
    Effect.gen(function*() {
      const root = uniqueName("readahead-reclaim")
      const { queueName } = names(root)
      const raw = yield* rawClient()
      const ctx = yield* Layer.build(layerRedis(root))
      const broker = Context.get(ctx, Broker)
      const store = Context.get(ctx, ResultBackend).redisStore!
      yield* broker.publish(message("orphan"))
      // A consumer that read it and died: the entry stays pending to it.
      yield* Effect.promise(() => raw.xreadgroup("GROUP", "taskiq", "ghost", "COUNT", 1, "STREAMS", queueName, ">"))
      for (let i = 0; i < 100; i++) yield* broker.publish(message(i))
      const consumer = yield* broker.consumer({ leaseMs: 200, blockMs: 50 })
      let batch = yield* consumer.read(10)
      let orphanAt: number | undefined
      for (let round = 0; round < 200 && orphanAt === undefined && batch.length > 0; round++) {
        yield* Effect.sleep("40 millis") // the tasks take a while
        if (batch.some((d) => argOf(d) === "orphan")) orphanAt = yield* broker.size
        const finished = batch.map((delivery) => ({
          delivery,
          taskId: Either.getOrThrow(delivery.message).taskId,
          result: TaskResult.succeed(null, 0)
        }))
        const next = yield* consumer.ackWithResults!(finished, store, finished.length)
        batch = next!.length > 0 ? next! : yield* consumer.read(10)
      }
      assert.isDefined(orphanAt, "the orphan was reclaimed")
      assert.isAbove(orphanAt!, 10, "while the backlog was still being worked through")
    }))

  it.scoped("ack deletes the entry (XACK + XDEL): the stream holds only unfinished work", () =>
    Effect.gen(function*() {
      const root = uniqueName("ackdel")
      const raw = yield* rawClient()
      const broker = yield* brokerIn(root)
      for (let i = 0; i < 5; i++) yield* broker.publish(message(i))
      const consumer = yield* broker.consumer({ blockMs: 100 })
      const ds = yield* readN(consumer, 5)
      for (const d of ds) yield* consumer.ack(d)
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(names(root).queueName)), 0)
      const summary = yield* Effect.promise(() => raw.xpending(names(root).queueName, "taskiq")) as Effect.Effect<Array<unknown>>
      assert.strictEqual(summary[0], 0)
    }))

  it.scopedLive("reclaims the messages of a dead consumer after the lease, continuing its cursor", () =>
    Effect.gen(function*() {
      const root = uniqueName("reclaim")
      const { queueName } = names(root)
      const raw = yield* rawClient()
      const broker = yield* brokerIn(root)
      for (let i = 0; i < 12; i++) yield* broker.publish(message(i))
      // A consumer that read everything and then died: no renewal, no release.
      yield* Effect.promise(() => raw.xreadgroup("GROUP", "taskiq", "dead-worker", "COUNT", 12, "STREAMS", queueName, ">"))
      const consumer = yield* broker.consumer({ blockMs: 50, leaseMs: 200 })
      assert.strictEqual((yield* consumer.read(5)).length, 0, "not before the lease ran out")
      yield* Effect.sleep("300 millis")
      const got: Array<Delivery> = []
      for (let i = 0; i < 20 && got.length < 12; i++) got.push(...yield* consumer.read(5))
      assert.deepStrictEqual(got.map(argOf).sort((a, b) => Number(a) - Number(b)), [...Array(12).keys()])
      assert.isTrue(got.every((d) => d.deliveryCount === 2))
      const owners = yield* Effect.promise(() => raw.xpending(queueName, "taskiq", "-", "+", 100)) as Effect.Effect<Array<[string, string]>>
      assert.isTrue(owners.every(([, owner]) => owner === consumer.name))
    }), { timeout: 20_000 })

  it.scopedLive("several consumers move each delayed message exactly once, woken for an earlier due time", () =>
    Effect.gen(function*() {
      const root = uniqueName("delayed")
      const broker = yield* brokerIn(root)
      // Movers that look on their own only every minute: only a producer's wake-up can bring these in time.
      const consumers = yield* Effect.all([1, 2, 3].map(() => broker.consumer({ blockMs: 50, delayedPollMs: 60_000 })))
      // Every mover is asleep now (nothing is due); a wake-up must bring the next one forward.
      yield* Effect.sleep("100 millis")
      for (let i = 0; i < 30; i++) yield* broker.publish(message(i), { delayMs: 200 })
      const got: Array<Delivery> = []
      const deadline = Date.now() + 20_000
      while (got.length < 30 && Date.now() < deadline) {
        for (const c of consumers) got.push(...yield* c.read(10))
      }
      assert.deepStrictEqual(got.map(argOf).sort((a, b) => Number(a) - Number(b)), [...Array(30).keys()])
      yield* Effect.sleep("200 millis")
      for (const c of consumers) assert.strictEqual((yield* c.read(10)).length, 0, "nothing moved twice")
    }))

  it.scoped("an entry without a data field is delivered as undecodable", () =>
    Effect.gen(function*() {
      const root = uniqueName("nodata")
      const raw = yield* rawClient()
      const broker = yield* brokerIn(root)
      yield* Effect.promise(() => raw.xadd(names(root).queueName, "*", "payload", "x"))
      const consumer = yield* broker.consumer({ blockMs: 100 })
      const [d] = yield* readN(consumer, 1)
      assert.match(Either.flip(d!.message).pipe(Either.getOrThrow).detail, /no 'data' field/)
    }))

  it.scoped("requeue_dead.lua goes past a batch, leaves a dead letter without data, and fails typed on a wrong key type", () =>
    Effect.gen(function*() {
      const root = uniqueName("requeue-dead")
      const { queueName } = names(root)
      const dlq = RedisBroker.keys(queueName).deadLetters
      const raw = yield* rawClient()
      const broker = yield* brokerIn(root)
      // Oldest first: one without data, then 2,500 as dead_letter.lua writes them (more than one batch of 1,000).
      yield* Effect.promise(async () => {
        await raw.xadd(dlq, "*", "reason", "no data", "task_id", "", "deliveries", "1", "source_id", "0-1")
        const pipeline = raw.pipeline()
        for (let i = 0; i < 2_500; i++) {
          pipeline.xadd(dlq, "*", "data", TaskMessage.encodeJson(message(i)), "reason", "r", "task_id", "", "deliveries", "5", "source_id", "0-1")
        }
        await pipeline.exec()
      })
      assert.strictEqual(yield* broker.requeueDeadLetters({ count: 1_200 }), 1_200)
      assert.strictEqual(yield* broker.requeueDeadLetters(), 1_300)
      const left = yield* broker.deadLetters()
      assert.deepStrictEqual(left.map((d) => d.reason), ["no data"], "a dead letter without data is not requeued")
      assert.strictEqual(yield* broker.size, 2_500)
      const [first] = yield* Effect.promise(() => raw.xrange(queueName, "-", "+", "COUNT", 1))
      assert.deepStrictEqual(first![1], ["data", TaskMessage.encodeJson({ ...message(0), taskId: JSON.parse(first![1][1]!).task_id })])
      assert.strictEqual(first![1].length, 2, "only the data: no delivery count carried over")

      yield* Effect.promise(() => raw.del(dlq).then(() => raw.set(dlq, "not a stream")))
      const error = yield* Effect.flip(broker.requeueDeadLetters())
      assert.strictEqual(error.reason, "Publish")
      assert.match(error.message, /WRONGTYPE/)
      assert.strictEqual((yield* Effect.flip(broker.purgeDeadLetters())).reason, "Ack")
      assert.strictEqual(yield* Effect.promise(() => raw.get(dlq)), "not a stream", "a failed purge deletes nothing")
      assert.strictEqual(yield* broker.size, 2_500, "a failed requeue adds nothing")
    }))

  it.scoped("recovers when the stream and its group are deleted under a live consumer", () =>
    Effect.gen(function*() {
      const root = uniqueName("nogroup")
      const raw = yield* rawClient()
      const broker = yield* brokerIn(root)
      const consumer = yield* broker.consumer({ blockMs: 50 })
      yield* Effect.promise(() => raw.del(names(root).queueName))
      assert.strictEqual((yield* consumer.read(1)).length, 0)
      yield* broker.publish(message(5))
      const [d] = yield* readN(consumer, 1)
      assert.strictEqual(argOf(d!), 5)
    }))
})
