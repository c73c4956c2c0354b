import { afterAll, afterEach, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { createServer, type Server, type Socket } from "node:net"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { Redis } from "ioredis"
import * as Executor from "../src/Executor.js"
import * as SyncPublisher from "../src/SyncPublisher.js"
import * as TaskHandle from "../src/TaskHandle.js"
import * as Taskiq from "../src/Taskiq.js"
import * as Worker from "../src/Worker.js"
import * as app from "./fixtures/app/tasks.js"
import * as tasks from "./fixtures/tasks.js"
import { deleteKeys, names, redisUrl, uniqueName } from "./utils/redis.js"
import { childEnv } from "./utils/taskiqProcess.js"
import { thrown } from "./utils/wait.js"

const root = uniqueName("sync")
const { queueName, resultPrefix } = names(root)
const idleQueue = `${root}:idle`
const infra = Taskiq.layerRedis({ url: redisUrl, queueName, resultPrefix })

let raw: Redis
let worker: Fiber.RuntimeFiber<never, unknown>


/** A TCP server that accepts connections and never answers: a Redis that hangs. */
const hangingServer = () =>
  new Promise<{ url: string; close: () => Promise<void> }>((resolve) => {
    const sockets = new Set<Socket>()
    const server: Server = createServer((socket) => void sockets.add(socket))
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      resolve({
        url: `redis://127.0.0.1:${port}/0`,
        close: () => {
          for (const s of sockets) s.destroy()
          return new Promise((done) => server.close(() => done()))
        }
      })
    })
  })

beforeAll(() => {
  raw = new Redis(redisUrl)
  worker = Worker.run({ blockMs: 100 }).pipe(
    Effect.provide(Executor.layer([app.declared, ...tasks.all])),
    Effect.provide(infra),
    Effect.runFork
  )
})

afterEach(() => SyncPublisher.close())

afterAll(async () => {
  await Effect.runPromise(Fiber.interrupt(worker))
  await Effect.runPromise(deleteKeys(root))
  raw.disconnect()
  tasks.closeFixtures()
})

describe("scheduleAsyncSync (standalone)", () => {
  it("returns the id of a declared task synchronously, with the message already in Redis", async () => {
    SyncPublisher.configure({ url: redisUrl, queueName: idleQueue, dotEnv: false })
    const id = SyncPublisher.scheduleAsyncSync(app.declared, 7)
    assert.match(id, /^[0-9a-f]{32}$/)
    const entries = await raw.xrange(idleQueue, "-", "+")
    const data = JSON.parse(entries.at(-1)![1][1]!)
    assert.strictEqual(data.task_id, id)
    assert.strictEqual(data.task_name, "app.declared")
    assert.deepStrictEqual(data.args, [7])
    // Created with the stream, as every producer does, so a worker started later reads it.
    assert.include(await raw.client("LIST") as string, `name=taskiq:sync-publisher:${idleQueue}`)
    const groups = await raw.xinfo("GROUPS", idleQueue) as Array<Array<unknown>>
    assert.strictEqual(groups[0]?.[1], "taskiq")
    const labelled = SyncPublisher.scheduleWithSync(app.declared, { labels: { tenant: "acme" } }, 1)
    const last = JSON.parse((await raw.xrange(idleQueue, "-", "+")).at(-1)![1][1]!)
    assert.strictEqual(last.task_id, labelled)
    assert.strictEqual(last.labels.tenant, "acme")
  })

  it("a worker then completes the task", async () => {
    SyncPublisher.configure({ url: redisUrl, queueName, dotEnv: false })
    const ids = [SyncPublisher.scheduleAsyncSync(tasks.add, 20, 22), SyncPublisher.scheduleAsyncSync(app.declared, 3)]
    const values = await Effect.runPromise(
      Effect.forEach(ids, (id) => TaskHandle.make(id, "", queueName).result({ timeout: "10 seconds" })).pipe(Effect.provide(infra))
    )
    assert.deepStrictEqual(values, [42, 30])
  })

  it("scheduleWithSync takes a priority, a delay and an idempotency key, as scheduleWith does", async () => {
    SyncPublisher.configure({ url: redisUrl, queueName: idleQueue, dotEnv: false })
    // A priority: the message goes to that priority's stream (its group created with it).
    const urgent = SyncPublisher.scheduleWithSync(app.declared, { priority: "high" }, 5)
    const high = await raw.xrange(`${idleQueue}:priority:high`, "-", "+")
    assert.strictEqual(JSON.parse(high.at(-1)![1][1]!).task_id, urgent)
    assert.strictEqual(((await raw.xinfo("GROUPS", `${idleQueue}:priority:high`)) as Array<Array<unknown>>)[0]?.[1], "taskiq")
    // An idempotency key: the second submission publishes nothing and answers with the first task's id.
    const before = await raw.xlen(idleQueue)
    const key = `${root}-once`
    const first = SyncPublisher.scheduleWithSync(app.declared, { idempotencyKey: key }, 1)
    assert.strictEqual(SyncPublisher.scheduleWithSync(app.declared, { idempotencyKey: key }, 2), first)
    assert.strictEqual(await raw.xlen(idleQueue), before + 1)
    // A delay: the message waits in the delayed set, then a worker runs it.
    SyncPublisher.configure({ url: redisUrl, queueName, dotEnv: false })
    const started = Date.now()
    const later = SyncPublisher.scheduleWithSync(app.declared, { delay: "400 millis" }, 4)
    assert.strictEqual(await raw.zcard(`${queueName}:delayed`), 1)
    const value = await Effect.runPromise(TaskHandle.make(later, "", queueName).result({ timeout: "10 seconds" }).pipe(Effect.provide(infra)))
    assert.strictEqual(value, 40)
    assert.isAtLeast(Date.now() - started, 400)
  })

  it("refuses a plain function (it needs a started client's registry) and a non-async one, before publishing", () => {
    SyncPublisher.configure({ url: "redis://127.0.0.1:1/0", dotEnv: false })
    const fn = thrown(() => SyncPublisher.scheduleAsyncSync(app.add, 1, 2))
    assert.strictEqual(fn._tag, "InvalidTask")
    assert.strictEqual(fn.reason, "NotExported")
    assert.include(fn.message, "tc.scheduleAsyncSync")
    assert.strictEqual(thrown(() => SyncPublisher.scheduleAsyncSync(app.notAsync as never, 1)).reason, "NotAsync")
    assert.strictEqual(thrown(() => SyncPublisher.scheduleAsyncSync(42 as never)).reason, "NotATask")
  })

  it("a Redis that never answers: SyncPublishError Timeout after the timeout, naming the task id", async () => {
    const server = await hangingServer()
    try {
      SyncPublisher.configure({ url: server.url, queueName: idleQueue, dotEnv: false, timeout: 0.3 })
      const started = Date.now()
      const error = thrown(() => SyncPublisher.scheduleAsyncSync(app.declared, 1))
      const elapsed = Date.now() - started
      assert.instanceOf(error, SyncPublisher.SyncPublishError)
      assert.strictEqual(error.reason, "Timeout")
      assert.match(String(error.taskId), /^[0-9a-f]{32}$/)
      assert.include(error.message, String(error.taskId))
      assert.include(error.message, "may or may not have been published")
      assert.isAtLeast(elapsed, 290)
      assert.isBelow(elapsed, 3_000)
    } finally {
      await SyncPublisher.close()
      await server.close()
    }
  })

  it("a call that timed out before the thread could publish is never published late", async () => {
    const queue = `${root}:late`
    SyncPublisher.configure({ url: redisUrl, queueName: queue, dotEnv: false, timeout: 0.001 })
    assert.strictEqual(thrown(() => SyncPublisher.scheduleAsyncSync(app.declared, 1)).reason, "Timeout")
    await new Promise((r) => setTimeout(r, 1_000)) // the thread starts, connects, and sees the deadline has passed
    assert.strictEqual(await raw.xlen(queue), 0)
  })

  it("a Redis that refuses connections: BrokerError Connect, with the password redacted", () => {
    SyncPublisher.configure({ url: "redis://user:s3cret@127.0.0.1:1/0", queueName: idleQueue, dotEnv: false, timeout: 5 })
    const error = thrown(() => SyncPublisher.scheduleAsyncSync(app.declared, 1))
    assert.strictEqual(error._tag, "BrokerError")
    assert.strictEqual(error.reason, "Connect")
    assert.include(error.message, "redis://user:***@127.0.0.1:1/0")
    assert.notInclude(error.message, "s3cret")
  })

  it("a script that ends without closing anything exits by itself (the thread is unref'd and closed at exit)", async () => {
    const queue = `${root}:script`
    const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/scripts/syncSchedule.ts", "5"], {
      env: childEnv({ TASKIQ_REDIS_URL: redisUrl, TASKIQ_QUEUE_NAME: queue }),
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (chunk) => (out += chunk))
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve))
    assert.strictEqual(code, 0) // and it exited at all: a thread left ref'd would keep it alive past the test's timeout
    const id = out.trim()
    assert.match(id, /^[0-9a-f]{32}$/)
    const [entry] = await raw.xrange(queue, "-", "+")
    assert.strictEqual(JSON.parse(entry![1][1]!).task_id, id)
    // No connection is left behind.
    const clients = await raw.client("LIST") as string
    assert.notInclude(clients, `taskiq:sync-publisher:${queue}`)
  }, 60_000)
})
