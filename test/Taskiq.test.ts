import { assert, describe, it } from "@effect/vitest"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { Broker } from "../src/Broker.js"
import * as RedisBroker from "../src/Broker/Redis.js"
import * as RedisConnection from "../src/RedisConnection.js"
import { ResultBackend } from "../src/ResultBackend.js"
import * as Taskiq from "../src/Taskiq.js"
import * as TaskMessage from "../src/TaskMessage.js"
import * as TaskResult from "../src/TaskResult.js"
import { cleanupKeys, rawClient, redisUrl, uniqueName } from "./utils/redis.js"

const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("Taskiq.layerRedisConfig", () => {
  it.scopedLive("reads the URL, queue name, TTL and prefix from the environment", () =>
    Effect.gen(function*() {
      const root = uniqueName("config")
      yield* cleanupKeys(root)
      const ctx = yield* Layer.build(Taskiq.layerRedisConfig({ dotEnv: false })).pipe(
        withEnv({
          TASKIQ_REDIS_URL: redisUrl,
          TASKIQ_QUEUE_NAME: `${root}:q`,
          TASKIQ_RESULT_EX_TIME: "120",
          TASKIQ_RESULT_PREFIX: `${root}:r`
        })
      )
      assert.strictEqual(Context.get(ctx, Broker).queueName, `${root}:q`)
      const id = TaskMessage.makeTaskId()
      yield* Context.get(ctx, ResultBackend).set(id, TaskResult.succeed(1, 0))
      const raw = yield* rawClient()
      const ttl = yield* Effect.promise(() => raw.pttl(`${root}:r:${id}`))
      assert.isTrue(ttl > 115_000 && ttl <= 120_000, `pttl ${ttl}`)
    }))

  it.effect("defaults: queue kc_taskiq_queue, URL redis://127.0.0.1:6379/0 (redacted as a secret)", () =>
    Effect.gen(function*() {
      // Read the settings themselves: building the layer would create the default queue in a shared Redis.
      assert.strictEqual(yield* RedisBroker.queueNameConfig, "kc_taskiq_queue")
      const url = yield* RedisConnection.urlConfig
      assert.strictEqual(Redacted.value(url), "redis://127.0.0.1:6379/0")
      assert.notInclude(String(url), "127.0.0.1")
    }).pipe(withEnv({})))

  it.scopedLive("a .env file fills what the environment does not set", () =>
    Effect.gen(function*() {
      const root = uniqueName("dotenv")
      yield* cleanupKeys(root)
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(join(tmpdir(), "taskiq-env-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const path = join(dir, ".env")
      writeFileSync(path, `TASKIQ_REDIS_URL=${redisUrl}\nTASKIQ_QUEUE_NAME=${root}:from-file\nTASKIQ_RESULT_PREFIX=${root}:r\n`)
      const fromFile = yield* Layer.build(Taskiq.layerRedisConfig({ dotEnv: path })).pipe(withEnv({}))
      assert.strictEqual(Context.get(fromFile, Broker).queueName, `${root}:from-file`)
      const envWins = yield* Layer.build(Taskiq.layerRedisConfig({ dotEnv: path })).pipe(
        withEnv({ TASKIQ_QUEUE_NAME: `${root}:from-env` })
      )
      assert.strictEqual(Context.get(envWins, Broker).queueName, `${root}:from-env`)
    }))

  it.scopedLive("a result TTL in both seconds and milliseconds is a configuration error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(Taskiq.layerRedisConfig({ dotEnv: false })).pipe(
          withEnv({ TASKIQ_REDIS_URL: redisUrl, TASKIQ_RESULT_EX_TIME: "10", TASKIQ_RESULT_PX_TIME: "10000" })
        )
      )
      assert.strictEqual(error._tag, "BackendError")
      assert.strictEqual((error as { reason: string }).reason, "Config")
      assert.include(error.message, "not both")
    }))

  it.scopedLive("a malformed setting names the variable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(Taskiq.layerRedisConfig({ dotEnv: false })).pipe(
          withEnv({ TASKIQ_REDIS_URL: redisUrl, TASKIQ_RESULT_PX_TIME: "soon" })
        )
      )
      assert.strictEqual((error as { reason: string }).reason, "Config")
      assert.include(error.message, "TASKIQ_RESULT_PX_TIME")
    }))

  it.scopedLive("an unreachable TASKIQ_REDIS_URL fails with its password redacted", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Layer.build(Taskiq.layerRedisConfig({ dotEnv: false })).pipe(
          withEnv({ TASKIQ_REDIS_URL: "redis://app:topsecret@127.0.0.1:1/0" })
        )
      )
      assert.strictEqual(error._tag, "BrokerError")
      assert.notInclude(error.message, "topsecret")
      assert.include(error.message, "app:***@127.0.0.1:1")
    }), { timeout: 15_000 })
})

describe("Taskiq.layerMemory", () => {
  it.scoped("provides a broker and backend that need no server", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(Taskiq.layerMemory())
      const id = TaskMessage.makeTaskId()
      yield* Context.get(ctx, ResultBackend).set(id, TaskResult.succeed("x", 0))
      assert.isTrue(Option.isSome(yield* Context.get(ctx, ResultBackend).get(id)))
      assert.strictEqual(yield* Context.get(ctx, Broker).size, 0)
    }))
})
