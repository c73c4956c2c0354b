import { afterAll, afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import { resolve } from "node:path"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { Redis } from "ioredis"
import * as App from "../src/App.js"
import * as Executor from "../src/Executor.js"
import { SyncPublishError } from "../src/SyncPublisher.js"
import * as TaskRegistry from "../src/TaskRegistry.js"
import * as Taskiq from "../src/Taskiq.js"
import { ClientNotStarted, TaskiqClient } from "../src/TaskiqClient.js"
import * as Worker from "../src/Worker.js"
import * as app from "./fixtures/app/tasks.js"
import { deleteKeys, names, redisUrl, uniqueName } from "./utils/redis.js"
import { thrown } from "./utils/wait.js"

const appDir = resolve("test/fixtures/app")
const root = uniqueName("client")
const { queueName, resultPrefix } = names(root)
/** A queue no worker consumes. */
const idleQueue = `${root}:idle`

let worker: Fiber.RuntimeFiber<never, unknown>
let raw: Redis
const clients: Array<TaskiqClient> = []

/** A client on this suite's queue (or another), shut down after the test. */
const client = (options: TaskiqClient.Options = {}) => {
  const tc = new TaskiqClient({ url: redisUrl, queueName, resultPrefix, appDir, modules: ["tasks.ts"], dotEnv: false, ...options })
  clients.push(tc)
  return tc
}

/** The rejection of a promise that must reject. */
const rejection = async (promise: Promise<unknown>): Promise<any> => {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error("expected a rejection")
}


beforeAll(() => {
  raw = new Redis(redisUrl)
  // A real worker (kc.exec over the fixture app, and its declared task) on the suite's queue.
  worker = Worker.run({ blockMs: 100, maxAsyncTasks: 8 }).pipe(
    Effect.provide(Executor.layerRegistry([app.steps])),
    Effect.provide(Layer.merge(
      Taskiq.layerRedis({ url: redisUrl, queueName, resultPrefix }),
      TaskRegistry.layer({ appDir, modules: ["tasks.ts"] })
    )),
    Effect.runFork
  )
})

afterEach(async () => {
  await Promise.all(clients.splice(0).map((tc) => tc.shutdown()))
})

afterAll(async () => {
  await Effect.runPromise(Fiber.interrupt(worker))
  await Effect.runPromise(deleteKeys(root))
  raw.disconnect()
})

describe("TaskiqClient with signing keys", () => {
  it("signs what it publishes, also from scheduleAsyncSync; a worker with the key runs it, and refuses an unsigned client's", async () => {
    const signedQueue = `${root}:signed`
    const signedWorker = Worker.run({ blockMs: 100, maxAsyncTasks: 4 }).pipe(
      Effect.provide(Executor.layerRegistry()),
      Effect.provide(Layer.merge(
        Taskiq.layerRedis({ url: redisUrl, queueName: signedQueue, resultPrefix, signingKeys: ["client-key"] }),
        TaskRegistry.layer({ appDir, modules: ["tasks.ts"] })
      )),
      Effect.runFork
    )
    try {
      const tc = client({ queueName: signedQueue, signingKeys: ["client-key"] })
      await tc.startup()
      assert.strictEqual(await (await tc.scheduleAsync(app.add, 2, 3)).result(10), 5)
      const id = tc.scheduleAsyncSync(app.add, 4, 5)
      assert.strictEqual(await tc.handle<number>(id).result(10), 9)
      const unsigned = client({ queueName: signedQueue })
      await unsigned.startup()
      const refused = await unsigned.scheduleAsync(app.add, 1, 1)
      for (let i = 0; i < 100 && (await raw.xlen(`${signedQueue}:dead`)) === 0; i++) await new Promise((r) => setTimeout(r, 50))
      const [[, fields]] = await raw.xrange(`${signedQueue}:dead`, "-", "+")
      assert.include(fields[fields.indexOf("reason") + 1], "(Unsigned)")
      assert.isNull(await tc.getResult(refused.taskId), "not run, no result")
    } finally {
      await Effect.runPromise(Fiber.interrupt(signedWorker))
    }
  })
})

describe("TaskiqClient task control", () => {
  it("progress as an async iterable, cancel() as a Promise, deduplicated submissions", async () => {
    const tc = client()
    await tc.startup()
    const job = await tc.scheduleAsync(app.steps, 4)
    const seen: Array<unknown> = []
    for await (const p of job.progress()) seen.push(p.meta)
    assert.strictEqual(seen[seen.length - 1], 4)
    assert.strictEqual(await job.result(5), 4)
    assert.deepStrictEqual(await job.getProgress(), { state: "STEP", meta: 4 })

    const slow = await tc.scheduleAsync(app.sleepy, 30_000)
    assert.isTrue(await slow.cancel("changed my mind"))
    const error = await rejection(slow.result(5))
    assert.strictEqual(error._tag, "TaskCancelled")
    assert.strictEqual(error.reason, "changed my mind")
    assert.isFalse(await job.cancel(), "a finished task is not cancelled")

    const key = `client-${Date.now()}`
    const [a, b] = await Promise.all([
      tc.scheduleWith(app.sleepy, { idempotencyKey: key }, 50),
      tc.scheduleWith(app.sleepy, { idempotencyKey: key }, 50)
    ])
    assert.strictEqual(a!.taskId, b!.taskId)
    assert.deepStrictEqual([a!.deduplicated, b!.deduplicated].sort(), [false, true])
    assert.strictEqual(await b!.result(5), "woke up")
  })
})

describe("TaskiqClient lifecycle", () => {
  it("starts (idempotently, also concurrently), runs, and shuts down (idempotently)", async () => {
    const tc = client()
    assert.isFalse(tc.isRunning)
    await Promise.all([tc.startup(), tc.startup()])
    await tc.startup()
    assert.isTrue(tc.isRunning)
    assert.strictEqual(tc.queueName, queueName)
    await tc.shutdown()
    await tc.shutdown()
    assert.isFalse(tc.isRunning)
  })

  it("calling before startup(), during it, or after shutdown() is a ClientNotStarted error", async () => {
    const tc = client()
    const before = await rejection(tc.scheduleAsync(app.add, 1, 2))
    assert.instanceOf(before, ClientNotStarted)
    assert.strictEqual(before.reason, "NotStarted")
    assert.include(before.message, "startup()")
    assert.strictEqual(thrown(() => tc.scheduleAsyncSync(app.add, 1, 2)).reason, "NotStarted")
    assert.strictEqual(thrown(() => tc.handle("x")).reason, "NotStarted")

    const starting = tc.startup()
    assert.strictEqual((await rejection(tc.getResult("x"))).reason, "Starting")
    await starting
    const handle = await tc.scheduleAsync(app.add, 1, 2)
    await tc.shutdown()

    for (const late of [tc.scheduleAsync(app.add, 1, 2), handle.waitResult(1), tc.startup()]) {
      const error = await rejection(late)
      assert.instanceOf(error, ClientNotStarted)
      assert.strictEqual(error.reason, "ShutDown")
    }
    assert.strictEqual(thrown(() => tc.scheduleAsyncSync(app.add, 1, 2)).reason, "ShutDown")
  })

  it("an unreachable Redis fails startup() with BrokerError, the password redacted; it may be retried", async () => {
    const tc = client({ url: "redis://user:s3cret-pw@127.0.0.1:1/0", connectTimeout: 2 })
    const error = await rejection(tc.startup())
    assert.strictEqual(error._tag, "BrokerError")
    assert.strictEqual(error.reason, "Connect")
    assert.instanceOf(error, Error)
    assert.include(error.message, "redis://user:***@127.0.0.1:1/0")
    assert.notInclude(error.message, "s3cret-pw")
    assert.notInclude(JSON.stringify(error), "s3cret-pw")
    assert.isFalse(tc.isRunning)
    assert.strictEqual((await rejection(tc.scheduleAsync(app.add, 1, 2))).reason, "NotStarted")
    assert.strictEqual((await rejection(tc.startup()))._tag, "BrokerError")
  })

  it("shutdown() during startup() lets it finish, then releases what it built", async () => {
    const tc = client()
    const starting = tc.startup()
    await tc.shutdown()
    await starting
    assert.isFalse(tc.isRunning)
    assert.strictEqual((await rejection(tc.scheduleAsync(app.add, 1, 2))).reason, "ShutDown")
  })

  it("shutdown() interrupts a wait in flight, which rejects with ClientNotStarted", async () => {
    const tc = client({ queueName: idleQueue })
    await tc.startup()
    const handle = await tc.scheduleAsync(app.add, 1, 2)
    const waiting = rejection(handle.waitResult(30))
    const started = Date.now()
    await tc.shutdown()
    const error = await waiting
    assert.instanceOf(error, ClientNotStarted)
    assert.strictEqual(error.reason, "ShutDown")
    assert.isBelow(Date.now() - started, 5_000)
  })
})

describe("TaskiqClient against a real worker", () => {
  it("scheduleAsync(declaredTask, ...args): waitResult resolves to { isErr, returnValue, error, executionTime }", async () => {
    const tc = client()
    await tc.startup()
    const handle = await tc.scheduleAsync(app.declared, 4)
    assert.match(handle.taskId, /^[0-9a-f]{32}$/)
    assert.strictEqual(handle.taskName, "app.declared")
    assert.strictEqual(handle.queueName, queueName)
    const result = await handle.waitResult(10)
    assert.isFalse(result.isErr)
    assert.strictEqual(result.returnValue, 40)
    assert.isNull(result.error)
    assert.isNumber(result.executionTime)
    assert.isAtLeast(result.executionTime, 0)
    assert.strictEqual(await handle.result(), 40)
    assert.deepStrictEqual(await tc.getResult(handle.taskId), result)
  })

  it("scheduleAsync(exportedAsyncFunction, ...args) goes through kc.exec, nested exports too", async () => {
    const tc = client()
    await tc.startup()
    const sum = await tc.scheduleAsync(app.add, 1, 2)
    assert.strictEqual(sum.taskName, "kc.exec")
    assert.strictEqual(await sum.result(10), 3)
    assert.strictEqual(await (await tc.scheduleAsync(app.math.mul, 6, 7)).result(10), 42)
    const greeted = await tc.scheduleWith(app.greet, { kwargs: { punctuation: "!" } }, "ada")
    assert.strictEqual(await greeted.result(10), "hello ada!")
  })

  it("scheduleMany submits many runs in one go, of a declared task or an exported function; bad input publishes nothing", async () => {
    const tc = client()
    await tc.startup()
    const declared = await tc.scheduleMany(app.declared, [[1], [2], [3]])
    assert.deepStrictEqual(await Promise.all(declared.map((h) => h.result(10))), [10, 20, 30])
    const sums = await tc.scheduleMany(app.add, [[1, 2], [3, 4]])
    assert.deepStrictEqual(sums.map((h) => h.taskName), ["kc.exec", "kc.exec"])
    assert.deepStrictEqual(await Promise.all(sums.map((h) => h.result(10))), [3, 7])
    const greeted = await tc.scheduleMany(app.greet, [["ada"], ["alan"]], { kwargs: { punctuation: "?" } })
    assert.deepStrictEqual(await Promise.all(greeted.map((h) => h.result(10))), ["hello ada?", "hello alan?"])
    const raw = new Redis(redisUrl)
    try {
      const before = await raw.xlen(queueName)
      const lambda = await rejection(tc.scheduleMany(async (n: number) => n, [[1]]))
      assert.strictEqual(lambda._tag, "InvalidTask")
      const keyed = await rejection(tc.scheduleMany(app.declared, [[1]], { idempotencyKey: "k" }))
      assert.strictEqual(keyed.reason, "InvalidOptions")
      assert.strictEqual(await raw.xlen(queueName), before, "nothing published")
    } finally {
      raw.disconnect()
    }
  })

  it("a task that throws: waitResult resolves with isErr, result() rejects with TaskFailed", async () => {
    const tc = client()
    await tc.startup()
    const handle = await tc.scheduleAsync(app.explode)
    const result = await handle.waitResult(10)
    assert.isTrue(result.isErr)
    assert.isNull(result.returnValue)
    assert.strictEqual(result.error?.excType, "TypeError")
    assert.deepStrictEqual(result.error?.excMessage, ["exploded on purpose"])
    const error = await rejection(handle.result(10))
    assert.strictEqual(error._tag, "TaskFailed")
    assert.instanceOf(error, Error)
    assert.include(error.message, handle.taskId)
  })

  it("no worker: waitResult rejects with ResultTimeout naming the task id and the queue", async () => {
    const tc = client({ queueName: idleQueue })
    await tc.startup()
    const handle = await tc.scheduleAsync(app.add, 1, 2)
    const started = Date.now()
    const error = await rejection(handle.waitResult(0.3))
    assert.isAtLeast(Date.now() - started, 250)
    assert.strictEqual(error._tag, "ResultTimeout")
    assert.strictEqual(error.taskId, handle.taskId)
    assert.isTrue(error instanceof Error)
    assert.include(error.message, handle.taskId)
    assert.include(error.message, idleQueue)
    assert.strictEqual((await rejection(handle.result(0.1)))._tag, "ResultTimeout")
    assert.instanceOf(await rejection(handle.waitResult(-1)), RangeError)
  })

  it("refuses a non-async function, a lambda and an unregistered function with InvalidTask", async () => {
    const tc = client()
    await tc.startup()
    const notAsync = await rejection(tc.scheduleAsync(app.notAsync as never, 1))
    assert.strictEqual(notAsync._tag, "InvalidTask")
    assert.strictEqual(notAsync.reason, "NotAsync")
    assert.include(notAsync.message, "export async function notAsync")
    const lambda = await rejection(tc.scheduleAsync(async (a: number) => a, 1))
    assert.strictEqual(lambda.reason, "NotExported")
    assert.include(lambda.message, "lambda")
    async function local() {}
    const unregistered = await rejection(tc.scheduleAsync(local))
    assert.strictEqual(unregistered.reason, "NotExported")
    assert.include(unregistered.message, "register that module")
    // The same checks guard the synchronous path.
    assert.strictEqual(thrown(() => tc.scheduleAsyncSync(app.notAsync as never, 1)).reason, "NotAsync")
    assert.strictEqual(thrown(() => tc.scheduleAsyncSync(async () => 1)).reason, "NotExported")
  })

  it("an App supplies the layer and the task modules", async () => {
    const tc = client({
      app: App.make({ layer: Taskiq.layerRedis({ url: redisUrl, queueName, resultPrefix }), appDir, modules: ["tasks.ts"] }),
      url: undefined,
      queueName: undefined,
      modules: undefined
    })
    await tc.startup()
    assert.strictEqual(await (await tc.scheduleAsync(app.math.deeper.neg, 5)).result(10), -5)
    // Without a url the publishing thread cannot know where the app's Redis is.
    const error = thrown(() => tc.scheduleAsyncSync(app.add, 1, 2))
    assert.instanceOf(error, SyncPublishError)
    assert.strictEqual(error.reason, "Unsupported")
    assert.include(error.message, "pass url")
  })

  it("a layer option (in memory) replaces Redis", async () => {
    const tc = client({ layer: Taskiq.layerMemory(), url: undefined, queueName: undefined })
    await tc.startup()
    assert.strictEqual(tc.queueName, "memory")
    const handle = await tc.scheduleAsync(app.declared, 1)
    assert.isNull(await tc.getResult(handle.taskId))
    assert.strictEqual((await rejection(handle.waitResult(0.05)))._tag, "ResultTimeout")
  })
})

describe("TaskiqClient.scheduleAsyncSync", () => {
  it("returns the task id synchronously, once Redis has the message; a worker then completes it", async () => {
    const idle = client({ queueName: idleQueue })
    await idle.startup()
    const before = await raw.xlen(idleQueue)
    const id = idle.scheduleAsyncSync(app.add, 1, 2)
    assert.isString(id)
    assert.match(id, /^[0-9a-f]{32}$/)
    // Nothing ran on this thread between the call and here: the message was in Redis when it returned.
    assert.strictEqual(await raw.xlen(idleQueue), before + 1)

    const tc = client()
    await tc.startup()
    const ids = [tc.scheduleAsyncSync(app.math.mul, 6, 7), tc.scheduleAsyncSync(app.declared, 2)]
    assert.deepStrictEqual(await Promise.all(ids.map((taskId) => tc.handle(taskId).result(10))), [42, 20])
    const started = performance.now()
    for (let i = 0; i < 20; i++) tc.scheduleAsyncSync(app.add, i, i)
    assert.isBelow(performance.now() - started, 2_000, "one long-lived thread, warm after the first call")
  })

  it("a message too large is refused before it is sent", async () => {
    const tc = client({ maxMessageBytes: 200 })
    await tc.startup()
    const error = thrown(() => tc.scheduleAsyncSync(app.greet, "x".repeat(500)))
    assert.strictEqual(error._tag, "BrokerError")
    assert.strictEqual(error.reason, "MessageTooLarge")
  })
})
