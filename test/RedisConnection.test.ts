import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as RedisConnection from "../src/RedisConnection.js"
import * as Taskiq from "../src/Taskiq.js"
import { Broker } from "../src/Broker.js"
import { privateRedis } from "./utils/redisServer.js"

describe("RedisConnection", () => {
  it("redacts the password of a URL, and only that", () => {
    assert.strictEqual(RedisConnection.redactUrl("redis://app:s3cret@127.0.0.1:6380/2"), "redis://app:***@127.0.0.1:6380/2")
    assert.strictEqual(RedisConnection.redactUrl("rediss://:s3cret@localhost:6379"), "rediss://:***@localhost:6379")
    assert.strictEqual(RedisConnection.redactUrl("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0")
    assert.notInclude(RedisConnection.redactUrl("not a url s3cret"), "s3cret")
  })

  it.live("an unreachable Redis fails with BrokerError, its URL redacted, within the connect timeout", () =>
    Effect.gen(function*() {
      const started = Date.now()
      // A port nothing listens on (a private server started and stopped again).
      const url = yield* Effect.scoped(Effect.map(privateRedis(), (r) => r.url))
      const secretUrl = url.replace("redis://", "redis://user:hunter2@")
      const error = yield* Effect.flip(
        Effect.scoped(Layer.build(Taskiq.layerRedis({ url: Redacted.make(secretUrl), connectTimeout: "1 second" })))
      )
      assert.strictEqual(error._tag, "BrokerError")
      assert.strictEqual((error as { reason: string }).reason, "Connect")
      assert.notInclude(error.message, "hunter2")
      assert.include(error.message, "user:***@127.0.0.1")
      assert.include(error.message, "ECONNREFUSED", "says why, not only that the connection closed")
      assert.isBelow(Date.now() - started, 5_000)
    }), { timeout: 15_000 })

  it.live("a Redis that accepts connections but never answers fails within the connect timeout", () =>
    Effect.gen(function*() {
      const net = yield* Effect.promise(() => import("node:net"))
      const server = net.createServer(() => {}) // accepts, never replies
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))),
        () => Effect.sync(() => server.close())
      )
      const port = (server.address() as { port: number }).port
      const error = yield* Effect.flip(
        Effect.scoped(Layer.build(RedisConnection.layer({ url: `redis://127.0.0.1:${port}/0`, connectTimeout: "300 millis" })))
      )
      assert.strictEqual(error.reason, "Connect")
    }).pipe(Effect.scoped), { timeout: 10_000 })

  it.scopedLive("the broker and the backend share one command connection", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis()
      const ctx = yield* Layer.build(Taskiq.layerRedis({ url: redis.url, queueName: "shared-conn" }))
      assert.strictEqual(Context.get(ctx, Broker).queueName, "shared-conn")
      const { Redis } = yield* Effect.promise(() => import("ioredis"))
      const raw = new Redis(redis.url)
      const list = yield* Effect.promise(() => raw.client("LIST") as Promise<string>)
      raw.disconnect()
      // Our command connection plus the inspecting one.
      assert.strictEqual(list.trim().split("\n").length, 2)
    }))
})
