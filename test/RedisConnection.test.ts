import { assert, describe, it } from "@effect/vitest"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Executor from "../src/Executor.js"
import * as RedisConnection from "../src/RedisConnection.js"
import * as Task from "../src/Task.js"
import * as Taskiq from "../src/Taskiq.js"
import * as Worker from "../src/Worker.js"
import { Broker, type BrokerError } from "../src/Broker.js"
import * as SyncPublisher from "../src/SyncPublisher.js"
import { TaskiqClient } from "../src/TaskiqClient.js"
import { privateRedis } from "./utils/redisServer.js"
import { taskiq } from "./utils/taskiqProcess.js"
import { thrown } from "./utils/wait.js"

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

// The ACL user every private server below has; the default user is disabled there.
const acl = { user: "taskiq-app", password: "pw-Xy7-s3cret" } as const

/** Connects with these options (a short connect timeout) and pings; the error when it cannot. */
const connect = (options: RedisConnection.RedisConnectionOptions) =>
  Effect.scoped(
    Effect.flatMap(RedisConnection.make({ connectTimeout: "3 seconds", ...options }), (c) => Effect.promise(() => c.client.ping()))
  )

/** Everything an error shows: its message, its string form and its JSON. */
const shown = (e: unknown) => `${(e as Error).message}\n${String(e)}\n${JSON.stringify(e)}`

const fromEnv = (env: Record<string, string>) => Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("RedisConnection: ACL users and TLS", () => {
  it.scopedLive("an ACL user's password in the URL logs in; a wrong one fails with a typed BrokerError that never shows it", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ acl })
      assert.strictEqual(yield* connect({ url: Redacted.make(redis.url) }), "PONG")

      const wrong = yield* Effect.flip(connect({ url: Redacted.make(redis.urlWith(`${acl.user}:not-${acl.password}`)) }))
      assert.strictEqual(wrong._tag, "BrokerError")
      assert.strictEqual(wrong.reason, "Connect")
      assert.include(wrong.message, "WRONGPASS")
      assert.include(wrong.message, `${acl.user}:***@127.0.0.1:${redis.port}`)
      assert.include(wrong.message, "check the ACL user and password")
      assert.notInclude(shown(wrong), acl.password)
      assert.isFalse(RedisConnection.isTransientConnectError(wrong), "a wrong password is not worth retrying")

      // The default user is disabled: without credentials nothing works.
      const anonymous = yield* Effect.flip(connect({ url: redis.urlWith("") }))
      assert.strictEqual(anonymous.reason, "Connect")
      assert.include(anonymous.message, "NOAUTH")
    }), { timeout: 30_000 })

  it.scopedLive("rediss:// works with the CA given; an untrusted certificate fails with a clear typed error", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ acl, tls: true })
      const certs = redis.certificates!
      assert.match(redis.url, /^rediss:\/\//)
      assert.strictEqual(yield* connect({ url: Redacted.make(redis.url), tls: { caFile: certs.caFile } }), "PONG")

      // Node's default CAs, then a CA that signed something else: both refuse the server's certificate.
      for (const tls of [undefined, { caFile: certs.otherCaFile }]) {
        const error = yield* Effect.flip(connect({ url: Redacted.make(redis.url), tls }))
        assert.strictEqual(error._tag, "BrokerError")
        assert.strictEqual(error.reason, "Connect")
        assert.include(error.message, "certificate")
        assert.include(error.message, "the server's TLS certificate is not trusted: give its CA with TASKIQ_REDIS_TLS_CA_FILE")
        assert.include(error.message, `rediss://${acl.user}:***@`)
        assert.notInclude(shown(error), acl.password)
        assert.isFalse(RedisConnection.isTransientConnectError(error))
      }
      // Not verifying is possible, and says so by its name.
      assert.strictEqual(yield* connect({ url: redis.url, tls: { rejectUnauthorized: false } }), "PONG")
    }), { timeout: 30_000 })

  it.scopedLive("TASKIQ_REDIS_TLS_* from the environment: the CA, a client certificate for a server that asks for one", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ tls: { clientAuth: true } })
      const certs = redis.certificates!
      const build = (env: Record<string, string>) =>
        Effect.scoped(
          Effect.flatMap(
            Layer.build(RedisConnection.layerConfig.pipe(Layer.provide(fromEnv({ TASKIQ_REDIS_URL: redis.url, ...env })))),
            (ctx) => Effect.promise(() => Context.get(ctx, RedisConnection.RedisConnection).client.ping())
          )
        )
      const withCa = { TASKIQ_REDIS_TLS_CA_FILE: certs.caFile }
      const withClientCert = { ...withCa, TASKIQ_REDIS_TLS_CERT_FILE: certs.clientCertFile, TASKIQ_REDIS_TLS_KEY_FILE: certs.clientKeyFile }
      assert.strictEqual(yield* build(withClientCert), "PONG")
      // The server asks for a client certificate: without one the handshake is refused.
      const refused = yield* Effect.flip(build(withCa))
      assert.strictEqual(refused.reason, "Connect")

      const configError = (env: Record<string, string>) =>
        Effect.flip(build(env)).pipe(Effect.tap((e: BrokerError) => assert.strictEqual(e.reason, "Config")))
      const halfCert = yield* configError({ ...withCa, TASKIQ_REDIS_TLS_CERT_FILE: certs.clientCertFile })
      assert.include(halfCert.message, "needs both TASKIQ_REDIS_TLS_CERT_FILE and TASKIQ_REDIS_TLS_KEY_FILE")
      const missing = yield* configError({ TASKIQ_REDIS_TLS_CA_FILE: `${certs.caFile}.missing` })
      assert.include(missing.message, `cannot read the TLS CA file ${certs.caFile}.missing`)
      const notBool = yield* configError({ ...withClientCert, TASKIQ_REDIS_TLS_REJECT_UNAUTHORIZED: "perhaps" })
      assert.include(notBool.message, "TASKIQ_REDIS_TLS_REJECT_UNAUTHORIZED")
      // Certificates with a redis:// URL would be ignored and the connection in clear text: refused instead.
      const plain = yield* Effect.flip(
        Effect.scoped(Layer.build(RedisConnection.layerConfig.pipe(
          Layer.provide(fromEnv({ ...withCa, TASKIQ_REDIS_URL: `redis://127.0.0.1:${redis.port}/0` }))
        )))
      )
      assert.strictEqual(plain.reason, "Config")
      assert.include(plain.message, "need a rediss:// URL")
    }), { timeout: 30_000 })

  it.scopedLive("a task round trip over TLS and an ACL user, configured from the environment (Taskiq.layerRedisConfig, Worker)", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ acl, tls: true })
      const env = fromEnv({
        TASKIQ_REDIS_URL: redis.url,
        TASKIQ_REDIS_TLS_CA_FILE: redis.certificates!.caFile,
        TASKIQ_QUEUE_NAME: "tls-acl-queue",
        TASKIQ_RESULT_PREFIX: "tls-acl-results"
      })
      const ctx = yield* Layer.build(Taskiq.layerRedisConfig({ dotEnv: false }).pipe(Layer.provide(env)))
      const multiply = Task.make("tls.multiply", (a: number, b: number) => Effect.succeed(a * b))
      yield* Worker.run({ blockMs: 100 }).pipe(
        Effect.provide(Executor.layer([multiply])),
        Effect.provide(ctx),
        Effect.tapErrorCause((c) => Effect.logError("worker failed", c)),
        Effect.forkScoped
      )
      // Submitted, run, saved and pushed back to the waiter (the result subscriber is a TLS connection too).
      const values = yield* Effect.forEach([1, 2, 3], (i) => Effect.flatMap(multiply.kiq(i, 7), (h) => h.result({ timeout: "20 seconds" })), {
        concurrency: "unbounded"
      }).pipe(Effect.provide(ctx))
      assert.deepStrictEqual(values, [7, 14, 21])
      assert.strictEqual(Context.get(ctx, Broker).queueName, "tls-acl-queue")
      // Every connection of ours came in as the ACL user (the default user is disabled anyway).
      const { Redis } = yield* Effect.promise(() => import("ioredis"))
      const raw = new Redis(redis.url, { tls: { ca: readFileSync(redis.certificates!.caFile) } })
      yield* Effect.addFinalizer(() => Effect.sync(() => raw.disconnect()))
      const clients = (yield* Effect.promise(() => raw.client("LIST") as Promise<string>)).trim().split("\n")
      assert.isAtLeast(clients.length, 3)
      for (const line of clients) assert.include(line, `user=${acl.user}`)
    }), { timeout: 60_000 })

  it.scopedLive("TaskiqClient takes the tls option (and TASKIQ_REDIS_TLS_* when it is not given)", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ acl, tls: true })
      const caFile = redis.certificates!.caFile
      const roundTrip = (tc: TaskiqClient) =>
        Effect.acquireUseRelease(
          Effect.promise(() => tc.startup().then(() => tc.getResult("0".repeat(32)))),
          (none) => Effect.sync(() => assert.isNull(none)),
          () => Effect.promise(() => tc.shutdown())
        )
      yield* roundTrip(new TaskiqClient({ url: redis.url, tls: { caFile }, dotEnv: false, queueName: "client-tls" }))
      // Not given in code: the environment's (here a .env file, as an operator would set it).
      const dir = yield* Effect.sync(() => mkdtempSync(join(tmpdir(), "taskiq-env-")))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      writeFileSync(join(dir, ".env"), `TASKIQ_REDIS_TLS_CA_FILE=${caFile}\n`)
      yield* roundTrip(new TaskiqClient({ url: redis.url, dotEnv: join(dir, ".env"), queueName: "client-tls" }))
      const untrusted = yield* Effect.flip(Effect.tryPromise({
        try: () => new TaskiqClient({ url: redis.url, dotEnv: false, queueName: "client-tls", connectTimeout: 3 }).startup(),
        catch: (e) => e as BrokerError
      }))
      assert.strictEqual(untrusted._tag, "BrokerError")
      assert.include(untrusted.message, "not trusted")
    }), { timeout: 30_000 })

  it.scopedLive("scheduleAsyncSync's publishing thread says why it cannot connect (an untrusted certificate), its URL redacted", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ acl, tls: true })
      yield* Effect.addFinalizer(() => Effect.promise(() => SyncPublisher.close()))
      const ping = Task.make("sync.ping", () => Effect.succeed("pong"))
      // No CA given to the thread: the handshake fails first, whatever the password.
      for (const url of [redis.url, redis.urlWith(`${acl.user}:not-${acl.password}`)]) {
        SyncPublisher.configure({ url, dotEnv: false, timeout: 5 })
        const error = thrown(() => SyncPublisher.scheduleAsyncSync(ping))
        assert.strictEqual(error._tag, "BrokerError")
        assert.strictEqual(error.reason, "Connect")
        assert.include(error.message, "certificate", "the TLS failure, not only \"Connection is closed\"")
        assert.notInclude(error.message, "Connection is closed")
        assert.include(error.message, `${acl.user}:***@`)
        assert.notInclude(shown(error), acl.password)
      }
    }), { timeout: 30_000 })
})

/** Worker processes (`node bin/taskiq.mjs worker examples/app.ts:app`, configured by the environment). */
describe("the worker command: Redis credentials and connecting", () => {
  const exampleWorker = (env: Record<string, string>, args: ReadonlyArray<string> = []) =>
    taskiq(["worker", "examples/app.ts:app", "--workers", "1", ...args], env)
  // examples/tasks.ts's `my.add`, declared here by name: only the worker runs it.
  const add = Task.make("my.add", (_a: number, _b: number) => Effect.succeed(0))
  const producer = (url: string, options: Taskiq.RedisOptions = {}) => Layer.build(Taskiq.layerRedis({ url, queueName: "cmd-queue", ...options }))

  it.scopedLive("--help prints no secret from the environment", () =>
    Effect.gen(function*() {
      const help = yield* taskiq(["worker", "--help"], { TASKIQ_REDIS_URL: `redis://${acl.user}:${acl.password}@127.0.0.1:6379/0` })
      assert.deepStrictEqual(yield* help.exit(), { code: 0, signal: null })
      assert.include(help.output(), "--connect-retry")
      assert.include(help.output(), "TASKIQ_CONNECT_RETRY")
      assert.notInclude(help.output(), acl.password)
    }), { timeout: 90_000 })

  it.scopedLive("a worker process over TLS as an ACL user serves tasks, and its log never shows the password", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ acl, tls: true })
      const caFile = redis.certificates!.caFile
      const worker = yield* exampleWorker({ TASKIQ_REDIS_URL: redis.url, TASKIQ_REDIS_TLS_CA_FILE: caFile, TASKIQ_QUEUE_NAME: "cmd-queue" })
      yield* worker.waitFor(/consuming "cmd-queue"/g)
      const ctx = yield* producer(redis.url, { tls: { caFile } })
      const sum = yield* Effect.flatMap(add.kiq(40, 2), (h) => h.result({ timeout: "30 seconds" })).pipe(Effect.provide(ctx))
      assert.strictEqual(sum, 42)
      assert.notInclude(worker.output(), acl.password)
    }), { timeout: 120_000 })

  it.scopedLive("a worker started before Redis retries (each failure logged, redacted) and serves tasks once Redis is up", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ acl, startNow: false })
      const worker = yield* exampleWorker({ TASKIQ_REDIS_URL: redis.url, TASKIQ_QUEUE_NAME: "cmd-queue", TASKIQ_CONNECT_RETRY: "120" })
      yield* worker.waitFor(/connecting to Redis failed \(attempt 2\); retrying for up to [\d.]+ s more: BrokerError: .*ECONNREFUSED/g)
      yield* Effect.sleep("1 second")
      yield* redis.start
      yield* worker.waitFor(/consuming "cmd-queue"/g)
      const ctx = yield* producer(redis.url)
      const sum = yield* Effect.flatMap(add.kiq(1, 2), (h) => h.result({ timeout: "30 seconds" })).pipe(Effect.provide(ctx))
      assert.strictEqual(sum, 3)
      assert.include(worker.output(), `redis://${acl.user}:***@127.0.0.1:${redis.port}/0`)
      assert.notInclude(worker.output(), acl.password)
      assert.isNull(worker.process.exitCode, "still running")
    }), { timeout: 120_000 })

  it.scopedLive("a worker gives up after --connect-retry with a clear error (exit 1); a wrong password is not retried", () =>
    Effect.gen(function*() {
      const down = yield* privateRedis({ startNow: false })
      const up = yield* privateRedis({ acl })
      const secretUrl = down.urlWith(`${acl.user}:${acl.password}`)
      const [unreachable, refused] = yield* Effect.all([
        exampleWorker({ TASKIQ_REDIS_URL: secretUrl }, ["--connect-retry", "1.5"]),
        exampleWorker({ TASKIQ_REDIS_URL: up.urlWith(`${acl.user}:wrong-${acl.password}`), TASKIQ_CONNECT_RETRY: "60" })
      ])
      const [gaveUp, stopped] = yield* Effect.all([unreachable.exit(), refused.exit()], { concurrency: 2 })
      assert.deepStrictEqual(gaveUp, { code: 1, signal: null }, unreachable.output())
      assert.match(unreachable.output(), /taskiq: could not connect to Redis: \d+ attempts in [\d.]+ s failed \(--connect-retry \/ TASKIQ_CONNECT_RETRY: 1.5 s\)/)
      assert.include(unreachable.output(), "connecting to Redis failed (attempt 1)")
      assert.include(unreachable.output(), `redis://${acl.user}:***@127.0.0.1:${down.port}/0`)
      assert.deepStrictEqual(stopped, { code: 1, signal: null }, refused.output())
      assert.include(refused.output(), "WRONGPASS")
      assert.notInclude(refused.output(), "retrying", "a wrong password is reported at once")
      for (const p of [unreachable, refused]) assert.notInclude(p.output(), acl.password)
    }), { timeout: 120_000 })
})
