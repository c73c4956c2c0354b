import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Chunk from "effect/Chunk"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RedisConnection from "../src/RedisConnection.js"
import { resolveTtlMs, ResultBackend, type ResultTtlOptions } from "../src/ResultBackend.js"
import * as MemoryBackend from "../src/ResultBackend/Memory.js"
import * as RedisBackend from "../src/ResultBackend/Redis.js"
import * as Inbox from "../src/internal/inbox.js"
import * as TaskHandle from "../src/TaskHandle.js"
import * as TaskMessage from "../src/TaskMessage.js"
import * as TaskResult from "../src/TaskResult.js"
import { cleanupKeys, names, rawClient, redisUrl, uniqueName } from "./utils/redis.js"
import { cuttingProxy } from "./utils/cuttingProxy.js"
import { privateRedis } from "./utils/redisServer.js"
import { eventually } from "./utils/wait.js"

const redisLayer = (root: string, options: ResultTtlOptions = {}) =>
  RedisBackend.layer({ prefix: names(root).resultPrefix, ...options }).pipe(
    Layer.provide(RedisConnection.layer({ url: redisUrl })),
    Layer.provideMerge(Layer.scopedDiscard(cleanupKeys(root)))
  )

const backendIn = <E>(layer: Layer.Layer<ResultBackend, E>) =>
  Effect.map(Layer.build(layer), (ctx) => Context.get(ctx, ResultBackend))

const ok = (value: unknown) => TaskResult.succeed(value, 0.25, { attempt: 1 })

const contract = (label: string, makeLayer: (root: string, options?: ResultTtlOptions) => Layer.Layer<ResultBackend, unknown>) =>
  describe(`ResultBackend contract: ${label}`, () => {
    const backend = (options?: ResultTtlOptions) => backendIn(makeLayer(uniqueName(`rb-${label}`), options))

    it.scopedLive("stores and reads back a result, field for field", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        const id = TaskMessage.makeTaskId()
        assert.isTrue(Option.isNone(yield* rb.get(id)))
        yield* rb.set(id, ok({ sum: 3 }))
        const got = Option.getOrThrow(yield* rb.get(id))
        assert.deepStrictEqual(got, { isErr: false, returnValue: { sum: 3 }, error: null, executionTime: 0.25, labels: { attempt: 1 }, log: null })
        yield* rb.delete(id)
        assert.isTrue(Option.isNone(yield* rb.get(id)))
      }))

    it.scopedLive("a waiter is pushed the result stored after it started waiting", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        const id = TaskMessage.makeTaskId()
        const waiter = yield* Effect.fork(rb.wait(id, Duration.seconds(10)))
        yield* Effect.sleep("100 millis")
        yield* rb.set(id, ok(41))
        const got = yield* Fiber.join(waiter)
        assert.strictEqual(Option.getOrThrow(got).returnValue, 41)
      }))

    it.scopedLive("a wait for a result already stored returns it", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        const id = TaskMessage.makeTaskId()
        yield* rb.set(id, ok("done"))
        assert.strictEqual(Option.getOrThrow(yield* rb.wait(id, Duration.seconds(5))).returnValue, "done")
      }))

    it.scopedLive("many waiters on many tasks each get their own result", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        const ids = Array.from({ length: 50 }, () => TaskMessage.makeTaskId())
        const waiters = yield* Effect.fork(Effect.forEach(ids, (id) => rb.wait(id, Duration.seconds(10)), { concurrency: "unbounded" }))
        yield* Effect.sleep("50 millis")
        yield* Effect.forEach(ids, (id, i) => rb.set(id, ok(i)), { concurrency: "unbounded" })
        const got = yield* Fiber.join(waiters)
        assert.deepStrictEqual(got.map((r) => Option.getOrThrow(r).returnValue), ids.map((_, i) => i))
      }))

    it.scopedLive("a wait that times out is None, not an error", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        assert.isTrue(Option.isNone(yield* rb.wait(TaskMessage.makeTaskId(), Duration.millis(100))))
      }))

    it.scopedLive("results expire after the TTL", () =>
      Effect.gen(function*() {
        const rb = yield* backend({ resultPxTime: 150 })
        const id = TaskMessage.makeTaskId()
        yield* rb.set(id, ok(1))
        assert.isTrue(Option.isSome(yield* rb.get(id)))
        yield* Effect.sleep("300 millis")
        assert.isTrue(Option.isNone(yield* rb.get(id)))
      }))

    it.scopedLive("cancel stores the cancellation once: later results do not overwrite it, a finished task is not cancelled", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        const id = TaskMessage.makeTaskId()
        const waiter = yield* Effect.fork(rb.wait(id, Duration.seconds(10)))
        yield* Effect.sleep("50 millis")
        assert.isTrue(yield* rb.cancel(id, TaskHandle.cancelledResult("stop")))
        assert.strictEqual(Option.getOrThrow(yield* Fiber.join(waiter)).error?.excType, "TaskCancelled")
        yield* rb.setMany([[id, ok("late")]])
        assert.strictEqual(Option.getOrThrow(yield* rb.get(id)).error?.excType, "TaskCancelled")
        const done = TaskMessage.makeTaskId()
        yield* rb.set(done, ok("finished"))
        assert.isFalse(yield* rb.cancel(done, TaskHandle.cancelledResult("too late")))
        assert.strictEqual(Option.getOrThrow(yield* rb.get(done)).returnValue, "finished")
      }))

    it.scopedLive("watchCancellations replays the cancellations so far, then pushes new ones", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        const before = TaskMessage.makeTaskId()
        yield* rb.cancel(before, TaskHandle.cancelledResult("x"))
        const seen: Array<string> = []
        yield* rb.watchCancellations((id) => seen.push(id))
        assert.deepStrictEqual(seen, [before])
        const after = TaskMessage.makeTaskId()
        yield* rb.cancel(after, TaskHandle.cancelledResult("y"))
        yield* eventually(async () => seen, (s) => s.includes(after), 5_000)
      }))

    it.scopedLive("progress: stored, read back, streamed in order, and the stream ends with the result", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        const id = TaskMessage.makeTaskId()
        assert.isTrue(Option.isNone(yield* rb.getProgress(id)))
        yield* rb.setProgress(id, { state: "STARTED", meta: null })
        const watcher = yield* Effect.fork(Stream.runCollect(rb.progress(id)))
        yield* Effect.sleep("50 millis")
        yield* rb.setProgress(id, { state: "HALF", meta: { pct: 50 } })
        yield* Effect.sleep("20 millis")
        yield* rb.set(id, ok(1))
        const seen = Chunk.toReadonlyArray(yield* Fiber.join(watcher).pipe(Effect.timeout("5 seconds")))
        assert.deepStrictEqual(seen.map((p) => p.state), ["STARTED", "HALF"])
        assert.deepStrictEqual(Option.getOrThrow(yield* rb.getProgress(id)), { state: "HALF", meta: { pct: 50 } })
        const error = yield* Effect.flip(rb.setProgress(id, { state: "X", meta: 1n }))
        assert.strictEqual(error.reason, "Encode")
      }))

    it.scopedLive("a result over maxResultBytes is a TooLarge error and is not stored; a bad limit is a Config error", () =>
      Effect.gen(function*() {
        const rb = yield* backend({ maxResultBytes: 1_000 })
        const id = TaskMessage.makeTaskId()
        const error = yield* Effect.flip(rb.set(id, ok("x".repeat(2_000))))
        assert.strictEqual(error.reason, "TooLarge")
        assert.include(error.message, "over maxResultBytes (1000)")
        assert.isTrue(Option.isNone(yield* rb.get(id)))
        yield* rb.set(id, ok("small"))
        assert.strictEqual(Option.getOrThrow(yield* rb.get(id)).returnValue, "small")
        const bad = yield* Effect.flip(backend({ maxResultBytes: 0 }))
        assert.strictEqual((bad as { reason: string }).reason, "Config")
      }))

    it.scopedLive("a value JSON cannot carry is an Encode error, not a crash", () =>
      Effect.gen(function*() {
        const rb = yield* backend()
        const error = yield* Effect.flip(rb.set(TaskMessage.makeTaskId(), ok(10n)))
        assert.strictEqual(error.reason, "Encode")
        assert.match(error.message, /not JSON-serializable/)
      }))

    it.scopedLive("a TTL in seconds and in milliseconds at once, zero or negative is a configuration error", () =>
      Effect.gen(function*() {
        for (const options of [{ resultExTime: 1, resultPxTime: 1000 }, { resultExTime: 0 }, { resultPxTime: -5 }, { resultPxTime: 1.5 }]) {
          const error = yield* Effect.flip(backend(options))
          assert.strictEqual((error as { reason?: string }).reason, "Config", JSON.stringify(options))
        }
      }))
  })

contract("memory", (_root, options) => MemoryBackend.layer(options))
contract("redis", (root, options) => redisLayer(root, options))

describe("TTL options", () => {
  it("defaults to one hour; seconds and milliseconds convert", () => {
    assert.strictEqual(resolveTtlMs({}), 3_600_000)
    assert.strictEqual(resolveTtlMs({ resultExTime: 2 }), 2_000)
    assert.strictEqual(resolveTtlMs({ resultPxTime: 250 }), 250)
    assert.match(String(resolveTtlMs({ resultExTime: 1, resultPxTime: 1 })), /not both/)
  })
})

describe("Redis result backend", () => {
  it.scopedLive("stores at <prefix>:<task_id> with a PX TTL, in taskiq's JSON", () =>
    Effect.gen(function*() {
      const root = uniqueName("rb-layout")
      const rb = yield* backendIn(redisLayer(root, { resultExTime: 60 }))
      const raw = yield* rawClient()
      const id = TaskMessage.makeTaskId()
      yield* rb.set(id, ok(3))
      const key = `${names(root).resultPrefix}:${id}`
      const ttl = yield* Effect.promise(() => raw.pttl(key))
      assert.isTrue(ttl > 55_000 && ttl <= 60_000, `pttl ${ttl}`)
      const json = JSON.parse((yield* Effect.promise(() => raw.get(key)))!)
      assert.deepStrictEqual(json, { is_err: false, log: null, return_value: 3, execution_time: 0.25, labels: { attempt: 1 }, error: null })
    }))

  it.scopedLive("reads results written by taskiq (Python) and keeps their extra fields", () =>
    Effect.gen(function*() {
      const root = uniqueName("rb-python")
      const rb = yield* backendIn(redisLayer(root))
      const raw = yield* rawClient()
      const id = TaskMessage.makeTaskId()
      yield* Effect.promise(() =>
        raw.set(
          `${names(root).resultPrefix}:${id}`,
          `{"is_err":true,"log":null,"return_value":null,"execution_time":0.1,"labels":{},"error":{"exc_type":"ValueError","exc_message":["bad"],"exc_module":"builtins","exc_cause":null}}`
        )
      )
      const got = Option.getOrThrow(yield* rb.get(id))
      assert.strictEqual(got.error?.excType, "ValueError")
      assert.deepStrictEqual(got.error?.extra, { exc_cause: null })
    }))

  it.scopedLive("a stored value that is not a result is a typed decode error", () =>
    Effect.gen(function*() {
      const root = uniqueName("rb-garbage")
      const rb = yield* backendIn(redisLayer(root))
      const raw = yield* rawClient()
      const id = TaskMessage.makeTaskId()
      yield* Effect.promise(() => raw.set(`${names(root).resultPrefix}:${id}`, "not json at all"))
      const error = yield* Effect.flip(rb.get(id))
      assert.strictEqual(error._tag, "ResultDecodeError")
      const waited = yield* Effect.flip(rb.wait(id, Duration.seconds(1)))
      assert.strictEqual(waited._tag, "ResultDecodeError")
    }))

  it.scopedLive("all waiters share one subscriber connection, which unsubscribes when they are done", () =>
    Effect.gen(function*() {
      const root = uniqueName("rb-shared")
      const rb = yield* backendIn(redisLayer(root))
      const raw = yield* rawClient()
      const ids = Array.from({ length: 30 }, () => TaskMessage.makeTaskId())
      const waiters = yield* Effect.fork(Effect.forEach(ids, (id) => rb.wait(id, Duration.seconds(10)), { concurrency: "unbounded" }))
      yield* Effect.sleep("100 millis")
      const channels = (yield* Effect.promise(() => raw.pubsub("CHANNELS", `__taskiq_result__:${names(root).resultPrefix}:*`))) as Array<string>
      assert.strictEqual(channels.length, 30)
      const clients = (yield* Effect.promise(() => raw.client("LIST") as Promise<string>)).split("\n")
        .filter((line) => line.includes("name=taskiq:results") && line.includes("sub=32"))
      assert.strictEqual(clients.length, 1, "one connection holds all 30 subscriptions, the process inbox and the cancel channel")
      yield* Effect.forEach(ids, (id) => rb.set(id, ok(id)))
      yield* Fiber.join(waiters)
      yield* eventually(
        () => raw.pubsub("CHANNELS", `__taskiq_result__:${names(root).resultPrefix}:*`) as Promise<Array<string>>,
        (after) => after.length === 0,
        5_000
      )
    }))

  it.scopedLive("once the process inbox is open, waiters for results pushed there subscribe to nothing of their own", () =>
    Effect.gen(function*() {
      const root = uniqueName("rb-inbox")
      const rb = yield* backendIn(redisLayer(root))
      const raw = yield* rawClient()
      // The first wait (on the task's own channel) opens the inbox for what is submitted from then on.
      const first = TaskMessage.makeTaskId()
      yield* rb.set(first, ok(0))
      yield* rb.wait(first, Duration.seconds(5))
      yield* eventually(async () => Inbox.isOpen(), (open) => open, 5_000)
      const ids = Array.from({ length: 20 }, () => TaskMessage.makeTaskId())
      const waiters = yield* Effect.fork(
        Effect.forEach(ids, (id) => rb.wait(id, Duration.seconds(10), Inbox.channel), { concurrency: "unbounded" })
      )
      yield* Effect.sleep("100 millis")
      const channels = (yield* Effect.promise(() => raw.pubsub("CHANNELS", `__taskiq_result__:${names(root).resultPrefix}:*`))) as Array<string>
      assert.deepStrictEqual(channels, [], "no per-task subscription")
      yield* rb.setMany(ids.map((id, i) => [id, TaskResult.succeed(i, 0, { [Inbox.label]: Inbox.channel })] as const))
      const got = yield* Fiber.join(waiters).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(got.map((r) => Option.getOrThrow(r).returnValue), ids.map((_, i) => i))
      // A result stored before its waiter started is read, not waited for.
      const early = TaskMessage.makeTaskId()
      yield* rb.set(early, TaskResult.succeed("early", 0, { [Inbox.label]: Inbox.channel }))
      assert.strictEqual(Option.getOrThrow(yield* rb.wait(early, Duration.seconds(5), Inbox.channel)).returnValue, "early")
      // A cancellation (stored by whoever cancels, who knows no inbox) reaches an inbox waiter too.
      const cancelled = TaskMessage.makeTaskId()
      const waiter = yield* Effect.fork(rb.wait(cancelled, Duration.seconds(10), Inbox.channel))
      yield* Effect.sleep("50 millis")
      yield* rb.cancel(cancelled, TaskHandle.cancelledResult("stop"))
      const got2 = yield* Fiber.join(waiter).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(Option.getOrThrow(got2).error?.excType, "TaskCancelled")
    }))

  it.scopedLive("inbox waiters for tasks submitted while the inbox held read nothing; after a reconnect they read again", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis()
      const rb = yield* backendIn(RedisBackend.layer({ prefix: "pre" }).pipe(Layer.provide(RedisConnection.layer({ url: redis.url }))))
      const admin = yield* rawClient(redis.url)
      const gets = () =>
        Effect.promise(async () => Number(/cmdstat_get:calls=(\d+)/.exec(await admin.info("commandstats"))?.[1] ?? 0))
      const pushed = (value: unknown) => TaskResult.succeed(value, 0, { [Inbox.label]: Inbox.channel })
      const first = TaskMessage.makeTaskId()
      yield* rb.set(first, ok(0))
      yield* rb.wait(first, Duration.seconds(5))
      yield* eventually(async () => Inbox.isOpen(), (open) => open, 5_000)
      yield* Effect.sleep("50 millis")
      // Submitted now (as Task.submit registers them): their results can only come by push.
      const ids = Array.from({ length: 20 }, () => TaskMessage.makeTaskId())
      for (const id of ids) Inbox.expect(id)
      const before = yield* gets()
      const waiters = yield* Effect.fork(
        Effect.forEach(ids, (id) => rb.wait(id, Duration.seconds(10), Inbox.channel), { concurrency: "unbounded" })
      )
      yield* Effect.sleep("50 millis")
      yield* rb.setMany(ids.map((id, i) => [id, pushed(i)] as const))
      const got = yield* Fiber.join(waiters).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(got.map((r) => Option.getOrThrow(r).returnValue), ids.map((_, i) => i))
      assert.strictEqual((yield* gets()) - before, 0, "no catch-up read")
      // A result pushed while the subscriber is down is lost: its waiter must read it.
      const lost = TaskMessage.makeTaskId()
      Inbox.expect(lost)
      yield* Effect.promise(() => admin.call("CLIENT", "KILL", "TYPE", "pubsub"))
      yield* rb.set(lost, pushed("lost"))
      const late = yield* rb.wait(lost, Duration.seconds(5), Inbox.channel)
      assert.strictEqual(Option.getOrThrow(late).returnValue, "lost")
      // A task registered before a reconnect, waited for after it: read too.
      const earlier = TaskMessage.makeTaskId()
      Inbox.expect(earlier)
      yield* Effect.promise(() => admin.call("CLIENT", "KILL", "TYPE", "pubsub"))
      yield* rb.set(earlier, pushed("earlier"))
      yield* Effect.sleep("500 millis")
      const after = yield* rb.wait(earlier, Duration.seconds(5), Inbox.channel)
      assert.strictEqual(Option.getOrThrow(after).returnValue, "earlier")
    }))

  it.scopedLive("waiters keep waiting while the subscriber connection is killed under them, and get their results", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis()
      const rb = yield* backendIn(RedisBackend.layer({ prefix: "kill" }).pipe(Layer.provide(RedisConnection.layer({ url: redis.url }))))
      const admin = yield* rawClient(redis.url)
      const ids = Array.from({ length: 3_000 }, () => TaskMessage.makeTaskId())
      // New waiters subscribe all along (20 every 40 ms) while the pub/sub connection is killed every 150 ms.
      const waiters = yield* Effect.forkScoped(Effect.forEach(
        ids,
        (id, i) => Effect.sleep(Math.floor(i / 20) * 40).pipe(Effect.zipRight(rb.wait(id, Duration.seconds(60)))),
        { concurrency: "unbounded" }
      ))
      for (let i = 0; i < 40; i++) {
        yield* Effect.sleep("150 millis")
        yield* Effect.promise(() => admin.call("CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes"))
      }
      yield* Effect.sleep("500 millis")
      yield* Effect.forEach(ids, (id) => rb.set(id, ok(id)), { concurrency: 50 })
      const got = yield* Fiber.join(waiters)
      assert.deepStrictEqual(got.map((r) => Option.getOrThrow(r).returnValue), ids)
    }), { timeout: 60_000 })

  // ioredis's own re-subscription resent a SUBSCRIBE that was half answered when its connection broke with the old
  // count of replies still to come: it completed early, later replies answered the wrong commands, and a second break
  // at that point lost the channels for good (their waiters never heard their results).
  it.scopedLive("a subscriber broken twice while it subscribes again to thousands of channels loses none of them", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis()
      const proxy = yield* cuttingProxy(redis.port)
      const rb = yield* backendIn(RedisBackend.layer({ prefix: "cut" }).pipe(Layer.provide(RedisConnection.layer({ url: proxy.url }))))
      const admin = yield* rawClient(redis.url)
      const n = 3_000
      const ids = Array.from({ length: n }, () => TaskMessage.makeTaskId())
      const waiters = yield* Effect.forkScoped(
        Effect.forEach(ids, (id) => rb.wait(id, Duration.seconds(30)), { concurrency: "unbounded" })
      )
      const subscribed = () =>
        (admin.call("PUBSUB", "CHANNELS", "__taskiq_result__:cut:*") as Promise<Array<string>>).then((c) => c.length)
      yield* eventually(subscribed, (count) => count === n)
      // What Redis sends per channel when a connection subscribes again (its count has at most 4 digits here).
      const channel = `__taskiq_result__:cut:${ids[0]}`
      const perChannel = Buffer.byteLength(`*3\r\n$9\r\nsubscribe\r\n$${channel.length}\r\n${channel}\r\n:3000\r\n`)
      // Break the subscriber; its reconnection is cut a quarter of the way through the replies to its SUBSCRIBEs, the
      // next one an eighth past all of them (where ioredis had completed the half-answered command early).
      const first = proxy.cut("taskiq:results", Math.round(0.25 * n * perChannel), 10_000)
      yield* Effect.promise(() => admin.call("CLIENT", "KILL", "TYPE", "pubsub"))
      assert.isTrue(yield* Effect.promise(() => first), "the first reconnection was cut half way")
      yield* Effect.promise(() => proxy.cut("taskiq:results", Math.round(1.12 * n * perChannel), 1_500))
      yield* eventually(subscribed, (count) => count === n, 5_000)
      yield* rb.setMany(ids.map((id, i) => [id, ok(i)] as const))
      const got = yield* Fiber.join(waiters).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(got.map((r) => Option.getOrThrow(r).returnValue), ids.map((_, i) => i))
    }), { timeout: 60_000 })
})
