import { afterAll, assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Duration from "effect/Duration"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Redis } from "ioredis"
import { Broker } from "../src/Broker.js"
import * as RedisBroker from "../src/Broker/Redis.js"
import * as Executor from "../src/Executor.js"
import * as RedisConnection from "../src/RedisConnection.js"
import { scheduleWith } from "../src/Producer.js"
import { BackendError, ResultBackend } from "../src/ResultBackend.js"
import * as RedisBackend from "../src/ResultBackend/Redis.js"
import * as Task from "../src/Task.js"
import type { TaskHandle } from "../src/TaskHandle.js"
import * as TaskMessage from "../src/TaskMessage.js"
import * as Worker from "../src/Worker.js"
import * as Taskiq from "../src/Taskiq.js"
import * as tasks from "./fixtures/tasks.js"
import { cleanupKeys, layerRedis, names, rawClient, redisUrl, uniqueName } from "./utils/redis.js"
import { childEnv } from "./utils/taskiqProcess.js"
import { privateRedis } from "./utils/redisServer.js"
import { eventually } from "./utils/wait.js"

type Services = Broker | ResultBackend

/** This test's Redis queue and backend, kept for the scope. */
const infraIn = (root: string, options: Taskiq.RedisOptions = {}) =>
  Layer.build(layerRedis(root, options))

/** Starts a worker over these services; interrupting the returned fiber shuts it down gracefully. */
const startWorker = (ctx: Context.Context<Services>, options: Worker.WorkerOptions = {}) =>
  Worker.run({ blockMs: 100, ...options }).pipe(
    Effect.provide(Executor.layer(tasks.all)),
    Effect.provide(ctx),
    Effect.forkScoped
  )

const inCtx = <A, E>(ctx: Context.Context<Services>, effect: Effect.Effect<A, E, Services>) => Effect.provide(effect, ctx)

const pendingCount = (raw: Redis, queue: string) =>
  Effect.promise(() => raw.xpending(queue, "taskiq") as Promise<[number, ...Array<unknown>]>).pipe(Effect.map((s) => s[0]))

describe("Worker", () => {
  it.scopedLive("1,000 tasks through 4 concurrent workers: 1,000 results, 0 pending, stream length 0", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-1000")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      for (let i = 0; i < 4; i++) yield* startWorker(ctx, { maxAsyncTasks: 16 })
      const handles = yield* inCtx(ctx, Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), (i) => tasks.add.kiq(i, 1), { concurrency: 100 }))
      const values = yield* inCtx(ctx, Effect.forEach(handles, (h) => h.result({ timeout: "30 seconds" }), { concurrency: "unbounded" }))
      assert.deepStrictEqual(values, Array.from({ length: 1000 }, (_, i) => i + 1))
      const { queueName, resultPrefix } = names(root)
      // Acks follow the saved results by a round trip.
      yield* eventually(() => Effect.runPromise(pendingCount(raw, queueName)), (n) => n === 0, 5_000)
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(queueName)), 0)
      assert.strictEqual((yield* Effect.promise(() => raw.keys(`${resultPrefix}:*`))).length, 1000)
      const consumers = yield* Effect.promise(() => raw.xinfo("CONSUMERS", queueName, "taskiq") as Promise<Array<unknown>>)
      assert.strictEqual(consumers.length, 4, "one consumer per worker")
    }), { timeout: 60_000 })

  it.scopedLive("a handler gets the services of the context its executor was built in", () =>
    Effect.gen(function*() {
      class Greeting extends Context.Tag("test/Greeting")<Greeting, string>() {}
      const greet = Task.make("t.greet", (name: string) => Effect.map(Greeting, (g) => `${g}, ${name}`))
      const ctx = yield* infraIn(uniqueName("w-services"))
      yield* Worker.run({ blockMs: 100, maxAsyncTasks: 2 }).pipe(
        Effect.provide(Executor.layer([greet]).pipe(Layer.provide(Layer.succeed(Greeting, "hello")))),
        Effect.provide(ctx),
        Effect.forkScoped
      )
      const greetings = yield* inCtx(ctx, Effect.forEach(["ada", "bob", "cy"], (n) => Effect.flatMap(greet.kiq(n), (h) => h.result({ timeout: "5 seconds" }))))
      assert.deepStrictEqual(greetings, ["hello, ada", "hello, bob", "hello, cy"])
    }))

  it.scopedLive("a bug that kills the reader stops the worker with it, instead of a worker that no longer reads", () =>
    Effect.gen(function*() {
      const ctx = yield* infraIn(uniqueName("w-reader-dies"))
      const broker = Context.get(ctx, Broker)
      let reads = 0
      // A consumer whose third read dies (a defect: not a BrokerError the reader retries).
      const buggy: Context.Tag.Service<Broker> = {
        ...broker,
        consumer: (options) =>
          Effect.map(broker.consumer(options), (consumer) => ({
            ...consumer,
            read: (max: number) => ++reads >= 3 ? Effect.die(new Error("a bug in read")) : consumer.read(max)
          }))
      }
      const worker = yield* startWorker(Context.add(ctx, Broker, buggy))
      const exit = yield* Fiber.await(worker).pipe(Effect.timeout("10 seconds"))
      assert.isTrue(Exit.isFailure(exit) && Option.isSome(Cause.dieOption(exit.cause)), String(exit))
      const defect = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined
      assert.strictEqual((defect as Error).message, "a bug in read")
    }))

  it.scopedLive("a failing, dying or throwing task gets an error result and never stops the pool", () =>
    Effect.gen(function*() {
      const ctx = yield* infraIn(uniqueName("w-errors"))
      yield* startWorker(ctx, { maxAsyncTasks: 2 })
      const failed = yield* inCtx(ctx, Effect.flatMap(tasks.fails.kiq("no"), (h) => h.waitResult()))
      assert.isTrue(failed.isErr)
      assert.strictEqual(failed.error?.excType, "Error")
      assert.deepStrictEqual(failed.error?.excMessage, ["no"])
      const died = yield* inCtx(ctx, Effect.flatMap(tasks.dies.kiq(), (h) => h.waitResult()))
      assert.strictEqual(died.error?.excType, "RangeError")
      assert.include(died.error?.pretty, "a bug in the task")
      const thrown = yield* inCtx(ctx, Effect.flatMap(tasks.throwsString.kiq(), (h) => h.result()).pipe(Effect.flip))
      assert.strictEqual(thrown._tag, "TaskFailed")
      assert.strictEqual((thrown as { excMessage: string }).excMessage, "a bare string")
      const sums = yield* inCtx(ctx, Effect.forEach([1, 2, 3, 4, 5, 6], (i) => Effect.flatMap(tasks.add.kiq(i, i), (h) => h.result())))
      assert.deepStrictEqual(sums, [2, 4, 6, 8, 10, 12])
    }))

  it.scopedLive("a result JSON cannot carry is stored as a ResultNotSerializable error; the rest of its batch is saved", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-bigint")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const handles = yield* inCtx(ctx, Effect.all([tasks.bigint.kiq(7), tasks.add.kiq(1, 1), tasks.add.kiq(2, 2)]))
      yield* startWorker(ctx)
      const [big, two, four] = yield* inCtx(
        ctx,
        Effect.all(handles.map((h) => (h as TaskHandle<unknown>).waitResult({ timeout: "10 seconds" })))
      )
      assert.strictEqual(big!.error?.excType, "ResultNotSerializable")
      assert.include(String(big!.error?.excMessage[0]), "BigInt")
      assert.deepStrictEqual([two!.returnValue, four!.returnValue], [2, 4])
      yield* eventually(() => raw.xlen(names(root).queueName), (n) => n === 0, 5_000)
    }))

  it.scopedLive("a task running 5× longer than the lease on a live worker is never reclaimed by another", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-lease")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx, { leaseMs: 300 })
      yield* startWorker(ctx, { leaseMs: 300 })
      const key = `${root}:runs`
      const handle = yield* inCtx(ctx, tasks.countAndSleep.kiq(key, 1_500))
      assert.strictEqual(yield* inCtx(ctx, handle.result({ timeout: "10 seconds" })), 1)
      yield* Effect.sleep("700 millis")
      assert.strictEqual(yield* Effect.promise(() => raw.get(key)), "1")
    }))

  it.scopedLive("a worker process killed mid-task: the task is reclaimed and completed by another worker", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-kill")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const { queueName, resultPrefix } = names(root)
      const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/worker.ts"], {
        env: childEnv({ TEST_QUEUE: queueName, TEST_PREFIX: resultPrefix, TEST_LEASE_MS: "500" }),
        stdio: ["ignore", "pipe", "inherit"]
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      const key = `${root}:runs`
      const handle = yield* inCtx(ctx, tasks.countAndSleep.kiq(key, 1_500))
      yield* eventually(() => raw.get(key), (v) => v === "1", 20_000)
      child.kill("SIGKILL")
      yield* startWorker(ctx, { leaseMs: 500 })
      const result = yield* inCtx(ctx, handle.waitResult({ timeout: "15 seconds" }))
      assert.isFalse(result.isErr)
      assert.strictEqual(result.returnValue, 2, "the second run completed it")
      yield* eventually(() => raw.xlen(queueName), (n) => n === 0, 5_000)
    }), { timeout: 40_000 })

  it.scopedLive("shutdown with 50 tasks running lets them finish within the timeout and acknowledges them", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-drain")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const worker = yield* startWorker(ctx, { shutdownTimeout: "10 seconds" })
      const key = `${root}:runs`
      const handles = yield* inCtx(ctx, Effect.forEach(Array.from({ length: 50 }), () => tasks.countAndSleep.kiq(key, 500)))
      yield* eventually(() => raw.get(key), (v) => v === "50")
      yield* Fiber.interrupt(worker)
      // The worker is gone; the results must already be there.
      const backend = Context.get(ctx, ResultBackend)
      for (const h of handles) assert.isTrue(Option.isSome(yield* backend.get(h.taskId)), "finished before shutdown ended")
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(names(root).queueName)), 0)
    }))

  it.scopedLive("past the shutdown timeout, running tasks are interrupted and handed back for another worker", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-handback")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const first = yield* startWorker(ctx, { shutdownTimeout: "100 millis", leaseMs: 60_000 })
      const key = `${root}:runs`
      const handles = yield* inCtx(ctx, Effect.forEach(Array.from({ length: 50 }), () => tasks.countAndSleep.kiq(key, 2_000)))
      yield* eventually(() => raw.get(key), (v) => v === "50")
      yield* Fiber.interrupt(first)
      const backend = Context.get(ctx, ResultBackend)
      for (const h of handles) assert.isTrue(Option.isNone(yield* backend.get(h.taskId)), "interrupted, no result")
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(names(root).queueName)), 50, "handed back, not lost")
      // A lease of a minute would keep them from a crashed worker; handed back, they run at once.
      yield* startWorker(ctx, { leaseMs: 60_000 })
      const runs = yield* inCtx(ctx, Effect.forEach(handles, (h) => h.result({ timeout: "10 seconds" })))
      assert.deepStrictEqual([...runs].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => 51 + i))
    }))

  it.scopedLive("garbage in the stream is dead-lettered and the worker keeps serving", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-garbage")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const { queueName } = names(root)
      yield* startWorker(ctx)
      const badId = TaskMessage.makeTaskId()
      yield* Effect.promise(() => raw.xadd(queueName, "*", "data", "{not json"))
      yield* Effect.promise(() => raw.xadd(queueName, "*", "something", "else"))
      yield* Effect.promise(() => raw.xadd(queueName, "*", "data", JSON.stringify({ task_id: badId, task_name: 7 })))
      const sum = yield* inCtx(ctx, Effect.flatMap(tasks.add.kiq(20, 22), (h) => h.result()))
      assert.strictEqual(sum, 42)
      const dead = yield* eventually(() => Effect.runPromise(Context.get(ctx, Broker).deadLetters()), (d) => d.length === 3)
      assert.deepStrictEqual(dead.map((d) => d.reason.split(":")[0]), [
        "Undecodable task message (InvalidJson)",
        "Undecodable task message (InvalidShape)",
        "Undecodable task message (InvalidShape)"
      ])
      // Where the task id was readable, its caller gets an error result instead of waiting forever.
      const result = yield* Context.get(ctx, ResultBackend).get(badId)
      assert.strictEqual(Option.getOrThrow(result).error?.excType, "MessageDecodeError")
      yield* eventually(() => raw.xlen(queueName), (n) => n === 0, 5_000)
    }))

  it.scopedLive("the error result of a malformed message whose reply_to is readable is pushed to that inbox too", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-garbage-inbox")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const listener = yield* rawClient()
      const inbox = `__taskiq_result__:inbox:${root}`
      const pushed: Array<string> = []
      listener.on("message", (_channel: string, message: string) => void pushed.push(message))
      yield* Effect.promise(() => listener.subscribe(inbox))
      yield* startWorker(ctx)
      const badId = TaskMessage.makeTaskId()
      yield* Effect.promise(() =>
        raw.xadd(names(root).queueName, "*", "data", JSON.stringify({ task_id: badId, task_name: 7, labels: { reply_to: inbox } }))
      )
      yield* eventually(async () => pushed.length, (n) => n === 1)
      const [key, json] = pushed[0]!.split("\n")
      assert.isTrue(key!.endsWith(badId))
      assert.strictEqual(JSON.parse(json!).error.exc_type, "MessageDecodeError")
    }))

  it.scopedLive("an unknown task name gets an error result and goes to the dead-letter queue", () =>
    Effect.gen(function*() {
      const ctx = yield* infraIn(uniqueName("w-unknown"))
      yield* startWorker(ctx)
      const broker = Context.get(ctx, Broker)
      const taskId = TaskMessage.makeTaskId()
      yield* broker.publish({ taskId, taskName: "no.such.task", labels: {}, args: [], kwargs: {} })
      const result = Option.getOrThrow(yield* Context.get(ctx, ResultBackend).wait(taskId, Duration.seconds(10)))
      assert.strictEqual(result.error?.excType, "InvalidTask")
      assert.include(String(result.error?.excMessage[0]), "t.add")
      const dead = yield* eventually(() => Effect.runPromise(broker.deadLetters()), (d) => d.length === 1, 5_000)
      assert.strictEqual(dead[0]?.taskId, taskId)
    }))

  it.scopedLive("a message delivered more than maxDeliveries times is dead-lettered with an error result", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-maxdel")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const { queueName } = names(root)
      const handle = yield* inCtx(ctx, tasks.add.kiq(1, 1))
      // Taken by a consumer that then died; the worker reclaims it as its second delivery.
      yield* Effect.promise(() => raw.xreadgroup("GROUP", "taskiq", "crashed", "COUNT", 1, "STREAMS", queueName, ">"))
      yield* startWorker(ctx, { maxDeliveries: 1, leaseMs: 200 })
      const result = yield* inCtx(ctx, handle.waitResult({ timeout: "10 seconds" }))
      assert.strictEqual(result.error?.excType, "MaxDeliveriesExceeded")
      // The error result is stored first, then the message moves: wait for the move.
      const dead = yield* eventually(() => Effect.runPromise(Context.get(ctx, Broker).deadLetters()), (d) => d.length === 1, 5_000)
      assert.strictEqual(dead[0]?.deliveries, 2)
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(queueName)), 0)
    }))

  it.scopedLive("a worker never holds more messages than it has slots", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-prefetch")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const { queueName } = names(root)
      const handles = yield* inCtx(ctx, Effect.forEach(Array.from({ length: 12 }), () => tasks.countAndSleep.kiq(`${root}:runs`, 150)))
      yield* startWorker(ctx, { maxAsyncTasks: 3 })
      yield* startWorker(ctx, { maxAsyncTasks: 2 })
      const done = yield* Effect.fork(inCtx(ctx, Effect.forEach(handles, (h) => h.result({ timeout: "20 seconds" }))))
      let maxHeld = 0
      while (done.unsafePoll() === null) {
        const consumers = yield* Effect.promise(() => raw.xinfo("CONSUMERS", queueName, "taskiq") as Promise<Array<Array<string | number>>>)
        for (const c of consumers) maxHeld = Math.max(maxHeld, Number(c[c.indexOf("pending") + 1]))
        yield* Effect.sleep("15 millis")
      }
      yield* Fiber.join(done)
      assert.isAtMost(maxHeld, 3)
      assert.isAtLeast(maxHeld, 2, "the sampling saw work in flight")
    }))

  it.scopedLive("with maxPrefetch a worker holds its slots plus the prefetch, runs no more than its slots, and hands back what it has not started", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-max-prefetch")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const { queueName } = names(root)
      const held = () =>
        (raw.xinfo("CONSUMERS", queueName, "taskiq") as Promise<Array<Array<string | number>>>).then((cs) =>
          cs.map((c) => Number(c[c.indexOf("pending") + 1])))
      const handles = yield* inCtx(ctx, Effect.forEach(Array.from({ length: 10 }), () => tasks.gauge.kiq(400)))
      Object.assign(tasks.gaugeState, { runs: 0, running: 0, max: 0 })
      const first = yield* startWorker(ctx, { maxAsyncTasks: 2, maxPrefetch: 3 })
      yield* eventually(held, (h) => h[0] === 5)
      yield* Effect.sleep("100 millis")
      assert.deepStrictEqual(yield* Effect.promise(held), [5], "2 running and 3 prefetched, no more")
      assert.strictEqual(tasks.gaugeState.max, 2, "the prefetched ones wait for a slot")
      // Stopping: the 3 not started go back to the queue at once; the 2 running finish.
      const stopping = yield* Effect.fork(Fiber.interrupt(first))
      yield* eventually(held, (h) => h[0] === 2, 300)
      assert.strictEqual(tasks.gaugeState.runs, 2)
      yield* Fiber.join(stopping)
      yield* startWorker(ctx, { maxAsyncTasks: 8 })
      const results = yield* inCtx(ctx, Effect.forEach(handles, (h) => h.waitResult({ timeout: "10 seconds" })))
      assert.isTrue(results.every((r) => !r.isErr))
      assert.strictEqual(tasks.gaugeState.runs, 10, "each ran once: nothing handed back had started")
      yield* eventually(() => raw.xlen(queueName), (n) => n === 0, 5_000)
    }))

  it.scopedLive("a task finishing while another batch's completion is still in flight is completed without waiting for it", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-two-ackers")
      const ctx = yield* infraIn(root)
      // The first completion (save + ack + read-ahead, one script) is held until released.
      const release = yield* Deferred.make<void>()
      let completions = 0
      const real = Context.get(ctx, Broker)
      const held = Broker.of({
        ...real,
        consumer: (options) =>
          Effect.map(real.consumer(options), (consumer) => ({
            ...consumer,
            ackWithResults: (batch, store, readAhead) =>
              Effect.suspend(() => completions++ === 0 ? Deferred.await(release) : Effect.void).pipe(
                Effect.zipRight(consumer.ackWithResults!(batch, store, readAhead))
              )
          }))
      })
      yield* startWorker(Context.add(ctx, Broker, held), { maxAsyncTasks: 2 })
      const first = yield* inCtx(ctx, tasks.add.kiq(1, 2))
      yield* eventually(async () => completions, (n) => n === 1)
      const second = yield* inCtx(ctx, tasks.add.kiq(3, 4))
      assert.strictEqual((yield* inCtx(ctx, second.waitResult({ timeout: "5 seconds" }))).returnValue, 7)
      assert.isTrue(Option.isNone(yield* Context.get(ctx, ResultBackend).get(first.taskId)), "the first is still held")
      yield* Deferred.succeed(release, undefined)
      assert.strictEqual((yield* inCtx(ctx, first.waitResult({ timeout: "5 seconds" }))).returnValue, 3)
    }))

  it.scopedLive("a lone task's completion reads nothing ahead while the reader waits on a read: one XREADGROUP per task, no XLEN", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis()
      const raw = yield* rawClient(redis.url)
      const ctx = yield* Layer.build(Taskiq.layerRedis({ url: redis.url, queueName: "lone", resultPrefix: "r" }))
      const calls = (command: string) =>
        Effect.promise(async () => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(await raw.info("commandstats"))?.[1] ?? 0))
      const reads = () => calls("xreadgroup")
      yield* startWorker(ctx, { maxAsyncTasks: 4, blockMs: 5_000 })
      const runOne = (i: number) => inCtx(ctx, Effect.flatMap(tasks.add.kiq(i, 1), (h) => h.result({ timeout: "5 seconds" })))
      yield* runOne(0)
      yield* Effect.sleep("50 millis")
      const before = yield* reads()
      const xlensBefore = yield* calls("xlen")
      for (let i = 1; i <= 10; i++) assert.strictEqual(yield* runOne(i), i + 1)
      yield* Effect.sleep("50 millis")
      // Nor does it look at the priority streams (read.lua does, on one read in eight: 2 XLENs each).
      assert.isAtMost((yield* calls("xlen")) - xlensBefore, 4)
      // The reader's blocking read takes each task, and its next one waits for the next task (one more is counted at
      // the edge); the completion script adds no read of its own (with one, 20).
      assert.isAtMost((yield* reads()) - before, 11)
    }))

  it.scopedLive("a lone task's completion reaches Redis before the reader's next read (its result is not queued behind it)", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis()
      const raw = yield* rawClient(redis.url)
      // What Redis received, in order: submissions, the worker's reads (XREADGROUP, or read.lua on some turns) and its
      // completion scripts (their first key is the cancelled set).
      const seen: Array<string> = []
      const monitor = yield* Effect.acquireRelease(
        Effect.promise(() => raw.duplicate().monitor()),
        (m) => Effect.sync(() => m.disconnect())
      )
      monitor.on("monitor", (_time: string, args: Array<string>) => {
        const command = args[0]?.toLowerCase()
        if (command === "xadd") seen.push("submit")
        if (command === "xreadgroup") seen.push("read")
        if (command === "evalsha") seen.push(args[3] === "r:__taskiq_cancelled__" ? "complete" : "read")
      })
      const ctx = yield* Layer.build(Taskiq.layerRedis({ url: redis.url, queueName: "order", resultPrefix: "r" }))
      yield* startWorker(ctx, { maxAsyncTasks: 4, blockMs: 5_000 })
      const runOne = (i: number) => inCtx(ctx, Effect.flatMap(tasks.add.kiq(i, 1), (h) => h.result({ timeout: "5 seconds" })))
      yield* runOne(0)
      yield* Effect.sleep("50 millis")
      seen.length = 0
      for (let i = 1; i <= 10; i++) {
        assert.strictEqual(yield* runOne(i), i + 1)
        // Lets the reader's next read reach Redis before the next submission.
        yield* Effect.sleep("20 millis")
      }
      yield* Effect.sleep("50 millis")
      // Each submission is followed by its completion, then the read that waits for the next one; with the read sent
      // first, the result waited behind it (one more write and one more command on the way).
      const afterEach = seen.join(" ").split("submit").slice(1).map((s) => s.trim())
      assert.strictEqual(afterEach.length, 10)
      // (A read may be a reclaim pass and a read: "complete read read".)
      for (const commands of afterEach) assert.match(commands, /^complete( read)+$/)
    }))

  it.scopedLive("ack policy: when_saved keeps the message until the result is stored; when_received acks at once", () =>
    Effect.gen(function*() {
      for (const [ackPolicy, expectedLen] of [["when_saved", 1], ["when_received", 0]] as const) {
        const root = uniqueName(`w-ack-${ackPolicy}`)
        const ctx = yield* infraIn(root)
        const raw = yield* rawClient()
        const worker = yield* startWorker(ctx, { ackPolicy })
        const handle = yield* inCtx(ctx, tasks.countAndSleep.kiq(`${root}:runs`, 500))
        yield* eventually(() => raw.get(`${root}:runs`), (v) => v === "1")
        assert.strictEqual(yield* Effect.promise(() => raw.xlen(names(root).queueName)), expectedLen, ackPolicy)
        assert.strictEqual(yield* inCtx(ctx, handle.result()), 1)
        yield* eventually(() => raw.xlen(names(root).queueName), (n) => n === 0, 5_000)
        yield* Fiber.interrupt(worker)
      }
    }))
})

describe("Worker: result notifications", () => {
  it.scopedLive("a worker publishes a result on its own channel only while some process waits on such channels", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-watch")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const { resultPrefix } = names(root)
      const watchers = `${resultPrefix}:__taskiq_watchers__`
      const sub = raw.duplicate()
      yield* Effect.addFinalizer(() => Effect.sync(() => sub.disconnect()))
      const heard: Array<string> = []
      sub.on("pmessage", (_pattern: string, channel: string) => heard.push(channel))
      yield* Effect.promise(() => sub.psubscribe(`__taskiq_result__:${resultPrefix}:*`))
      yield* startWorker(ctx)
      // Nobody waits on its channel: stored, not published.
      const quiet = yield* inCtx(ctx, tasks.add.kiq(1, 1))
      yield* eventually(() => raw.get(`${resultPrefix}:${quiet.taskId}`), (v) => v !== null)
      // A wait on a result's own channel (as for a task another process submitted) registers this process.
      const loud = yield* inCtx(ctx, tasks.countAndSleep.kiq(`${root}:runs`, 300))
      const waiting = yield* Effect.fork(Context.get(ctx, ResultBackend).wait(loud.taskId, Duration.seconds(10)))
      yield* eventually(() => raw.zcard(watchers), (n) => n === 1)
      assert.isTrue(Option.isSome(yield* Fiber.join(waiting)))
      yield* Effect.sleep("100 millis")
      assert.deepStrictEqual(heard, [`__taskiq_result__:${resultPrefix}:${loud.taskId}`])
      // The wait over, so is the registration.
      yield* eventually(() => raw.zcard(watchers), (n) => n === 0)
    }))
})

describe("Worker: results too large to store", () => {
  it.scopedLive("a result over maxResultBytes becomes a ResultTooLarge error result; the worker keeps serving", () =>
    Effect.gen(function*() {
      const ctx = yield* infraIn(uniqueName("w-too-large"), { maxResultBytes: 10_000 })
      yield* startWorker(ctx)
      const result = yield* inCtx(ctx, Effect.flatMap(tasks.big.kiq(50_000), (h) => h.waitResult({ timeout: "5 seconds" })))
      assert.isTrue(result.isErr)
      assert.strictEqual(result.error?.excType, "ResultTooLarge")
      assert.include(result.error?.excMessage[0], "over maxResultBytes (10000)")
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(tasks.big.kiq(100), (h) => h.result({ timeout: "5 seconds" }))), "x".repeat(100))
    }))
})

describe("Worker: retries and delays", () => {
  it.scopedLive("a failing task is retried through the delayed queue until it succeeds; the result counts retries", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-retry")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx)
      const handle = yield* inCtx(ctx, tasks.flaky.kiq(`${root}:runs`, 3))
      const result = yield* inCtx(ctx, handle.waitResult({ timeout: "10 seconds" }))
      assert.isFalse(result.isErr)
      assert.strictEqual(result.returnValue, 3)
      assert.strictEqual(result.labels._retries, 2)
      assert.strictEqual(yield* Effect.promise(() => raw.get(`${root}:runs`)), "3")
    }))

  it.scopedLive("per submission, retry: false turns the task's retries off and { maxAttempts } changes how many (taskiq's labels)", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-retry-override")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx)
      const once = yield* inCtx(ctx, Effect.flatMap(scheduleWith(tasks.flaky, { retry: false }, `${root}:a`, 3), (h) => h.waitResult({ timeout: "10 seconds" })))
      assert.isTrue(once.isErr)
      assert.strictEqual(once.labels.retry_on_error, false)
      yield* Effect.sleep("200 millis")
      assert.strictEqual(yield* Effect.promise(() => raw.get(`${root}:a`)), "1", "not retried")
      // The task allows 3 attempts; this submission 5, so the 4th run succeeds.
      const more = yield* inCtx(ctx, Effect.flatMap(scheduleWith(tasks.flaky, { retry: { maxAttempts: 5 } }, `${root}:b`, 4), (h) => h.waitResult({ timeout: "10 seconds" })))
      assert.isFalse(more.isErr)
      assert.strictEqual(more.returnValue, 4)
      assert.strictEqual(more.labels._retries, 3)
      assert.strictEqual(more.labels.max_retries, 4)
      const bad = yield* inCtx(ctx, scheduleWith(tasks.flaky, { retry: { maxAttempts: 0 } }, `${root}:c`, 1)).pipe(Effect.flip)
      assert.strictEqual((bad as Task.InvalidTask).reason, "InvalidOptions")
    }))

  it.scopedLive("a retry policy gives up after maxAttempts with the last failure as the result", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-giveup")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx)
      const result = yield* inCtx(ctx, Effect.flatMap(tasks.flaky.kiq(`${root}:runs`, 99), (h) => h.waitResult({ timeout: "10 seconds" })))
      assert.isTrue(result.isErr)
      assert.deepStrictEqual(result.error?.excMessage, ["run 3 fails"])
      assert.strictEqual(result.labels._retries, 2)
      yield* Effect.sleep("200 millis")
      assert.strictEqual(yield* Effect.promise(() => raw.get(`${root}:runs`)), "3", "no fourth attempt")
      assert.strictEqual(yield* Context.get(ctx, Broker).delayedSize, 0)
    }))

  it.scopedLive("an error marked nonRetryable is not retried", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-fatal")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx)
      const result = yield* inCtx(ctx, Effect.flatMap(tasks.fatal.kiq(`${root}:runs`), (h) => h.waitResult({ timeout: "10 seconds" })))
      assert.isTrue(result.isErr)
      assert.deepStrictEqual(result.error?.excMessage, ["hopeless"])
      yield* Effect.sleep("100 millis")
      assert.strictEqual(yield* Effect.promise(() => raw.get(`${root}:runs`)), "1")
    }))

  it.scopedLive("a task that times out is interrupted, retried, and ends as TaskTimeout", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-timeout")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx, { maxAsyncTasks: 2 })
      const result = yield* inCtx(ctx, Effect.flatMap(tasks.hangs.kiq(`${root}:runs`), (h) => h.waitResult({ timeout: "10 seconds" })))
      assert.strictEqual(result.error?.excType, "TaskTimeout")
      assert.strictEqual(yield* Effect.promise(() => raw.get(`${root}:runs`)), "2")
      // The timed-out runs freed their slots: the pool still serves.
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(tasks.add.kiq(2, 2), (h) => h.result())), 4)
    }))

  it.scopedLive("a per-submission timeout (taskiq's timeout label) interrupts a task that has none of its own", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-sub-timeout")
      const ctx = yield* infraIn(root)
      yield* startWorker(ctx)
      const handle = yield* inCtx(ctx, scheduleWith(tasks.countAndSleep, { timeout: "150 millis" }, `${root}:runs`, 5_000))
      const result = yield* inCtx(ctx, handle.waitResult({ timeout: "10 seconds" }))
      assert.strictEqual(result.error?.excType, "TaskTimeout")
      assert.strictEqual(result.labels.timeout, 0.15)
      // Without the label the same task runs to completion.
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(tasks.countAndSleep.kiq(`${root}:runs`, 10), (h) => h.result())), 2)
    }))

  it.scopedLive("a delayed submission runs after its delay", () =>
    Effect.gen(function*() {
      const ctx = yield* infraIn(uniqueName("w-delay"))
      yield* startWorker(ctx)
      const started = Date.now()
      const handle = yield* inCtx(ctx, scheduleWith(tasks.add, { delay: "400 millis" }, 20, 1))
      assert.strictEqual(yield* inCtx(ctx, handle.result({ timeout: "10 seconds" })), 21)
      assert.isAtLeast(Date.now() - started, 390)
    }))
})

describe("Worker when results cannot be saved", () => {
  it.scopedLive("hands the messages back instead of holding them: they run again once the backend recovers", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-backend-down")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      // The result backend refuses every write for the first 2 seconds, past the worker's own retries.
      const healthyAt = Date.now() + 2_000
      const real = Context.get(ctx, ResultBackend)
      const down = new BackendError({ reason: "Set", detail: "injected outage" })
      const flaky = ResultBackend.of({
        ...real,
        redisStore: undefined, // this backend's writes go through set/setMany, not straight to Redis
        set: (id, r) => Effect.suspend(() => Date.now() < healthyAt ? Effect.fail(down) : real.set(id, r)),
        setMany: (entries) => Effect.suspend(() => Date.now() < healthyAt ? Effect.fail(down) : real.setMany(entries))
      })
      // A minute's lease: without the hand-back, the message would stay with this worker that long.
      yield* startWorker(Context.add(ctx, ResultBackend, flaky), { leaseMs: 60_000 })
      const key = `${root}:runs`
      const handle = yield* inCtx(ctx, tasks.countAndSleep.kiq(key, 1))
      const runs = yield* inCtx(ctx, handle.result({ timeout: "20 seconds" }))
      assert.isAtLeast(runs, 2, "ran again after the failed save")
      yield* eventually(() => raw.xlen(names(root).queueName), (n) => n === 0, 5_000)
    }), { timeout: 40_000 })
})

describe("Worker against a Redis that goes away", () => {
  it.scopedLive("keeps serving after its connections are killed and after Redis restarts", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis()
      const ctx = yield* Layer.build(Taskiq.layerRedis({ url: redis.url, queueName: "restart-q" }))
      const raw = yield* rawClient(redis.url)
      yield* startWorker(ctx)
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(tasks.add.kiq(1, 2), (h) => h.result())), 3)

      yield* Effect.promise(() => raw.client("KILL", "TYPE", "normal", "SKIPME", "yes"))
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(tasks.add.kiq(2, 3), (h) => h.result({ timeout: "10 seconds" }))), 5)

      yield* redis.stop
      yield* Effect.sleep("300 millis")
      yield* redis.start
      // Redis came back empty (no persistence): the group is recreated and new work flows again.
      const h = yield* inCtx(ctx, tasks.add.kiq(3, 4))
      assert.strictEqual(yield* inCtx(ctx, h.result({ timeout: "15 seconds" })), 7)
      const info = yield* Effect.promise(() => raw.xinfo("GROUPS", "restart-q") as Promise<Array<unknown>>)
      assert.strictEqual(info.length, 1)
    }), { timeout: 60_000 })

  it.scopedLive("a waiter on a result's own channel registers again after Redis restarts, and is pushed its result", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis()
      const ctx = yield* Layer.build(Taskiq.layerRedis({ url: redis.url, queueName: "watch-q" }))
      const raw = yield* rawClient(redis.url)
      const taskId = TaskMessage.makeTaskId()
      const waiting = yield* Effect.fork(Context.get(ctx, ResultBackend).wait(taskId, Duration.seconds(20)))
      yield* eventually(() => raw.zcard("__taskiq_watchers__"), (n) => n === 1)
      yield* redis.stop
      yield* Effect.sleep("300 millis")
      yield* redis.start
      // Redis came back empty: the process registers again once its subscriber is back, before catching up.
      yield* eventually(() => raw.zcard("__taskiq_watchers__").catch(() => -1), (n) => n === 1, 15_000)
      yield* startWorker(ctx)
      yield* inCtx(ctx, Effect.flatMap(Broker, (b) => b.publish({ taskId, taskName: tasks.add.name, labels: {}, args: [2, 2], kwargs: {} })))
      // Only a push can answer it now: its catch-up read after the restart found nothing.
      const result = yield* Fiber.join(waiting)
      assert.strictEqual(Option.getOrThrow(result).returnValue, 4)
    }), { timeout: 60_000 })
})

afterAll(() => tasks.closeFixtures())

describe("Worker: cancellation", () => {
  it.scopedLive("a task cancelled while queued never starts, even on a worker started afterwards; its waiter gets TaskCancelled", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-cancel-queued")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const handle = yield* inCtx(ctx, tasks.countAndSleep.kiq(`${root}:runs`, 0))
      const waiter = yield* inCtx(ctx, handle.result({ timeout: "10 seconds" })).pipe(Effect.flip, Effect.fork)
      assert.isTrue(yield* inCtx(ctx, handle.cancel("not needed any more")))
      const error = yield* Fiber.join(waiter)
      assert.strictEqual(error._tag, "TaskCancelled")
      assert.include(error.message, "not needed any more")
      yield* startWorker(ctx, { maxAsyncTasks: 1 })
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(tasks.add.kiq(1, 2), (h) => h.result({ timeout: "10 seconds" }))), 3)
      assert.isNull(yield* Effect.promise(() => raw.get(`${root}:runs`)), "the cancelled task never ran")
      yield* eventually(() => Effect.runPromise(inCtx(ctx, Effect.flatMap(Broker, (b) => b.size))), (n) => n === 0, 5_000)
      const stored = yield* inCtx(ctx, handle.waitResult())
      assert.strictEqual(stored.error?.excType, "TaskCancelled", "the worker did not overwrite the cancellation")
    }))

  it.scopedLive("a running task is interrupted (its finalizers run), its message acked, and the worker keeps all its slots", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-cancel-running")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx, { maxAsyncTasks: 1 })
      const handle = yield* inCtx(ctx, tasks.interruptible.kiq(`${root}:runs`, 60_000))
      yield* eventually(() => raw.get(`${root}:runs`), (v) => v === "1", 5_000)
      assert.isTrue(yield* inCtx(ctx, handle.cancel()))
      const error = yield* inCtx(ctx, handle.result({ timeout: "5 seconds" })).pipe(Effect.flip)
      assert.strictEqual(error._tag, "TaskCancelled")
      yield* eventually(() => raw.get(`${root}:runs:interrupted`), (v) => v === "1", 5_000)
      // The only slot was the cancelled task's: a new one took its place.
      assert.deepStrictEqual(
        yield* inCtx(ctx, Effect.forEach([1, 2, 3], (i) => Effect.flatMap(tasks.add.kiq(i, i), (h) => h.result({ timeout: "5 seconds" })))),
        [2, 4, 6]
      )
      yield* eventually(() => Effect.runPromise(inCtx(ctx, Effect.flatMap(Broker, (b) => b.size))), (n) => n === 0, 5_000)
      assert.strictEqual(yield* Effect.promise(() => raw.get(`${root}:runs`)), "1", "it ran once and was not handed back")
      assert.strictEqual((yield* inCtx(ctx, handle.waitResult())).error?.excType, "TaskCancelled")
    }))

  it.scopedLive("with two workers racing, the one running the task interrupts it; neither runs it again", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-cancel-race")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx, { maxAsyncTasks: 2 })
      yield* startWorker(ctx, { maxAsyncTasks: 2 })
      const handles = yield* inCtx(ctx, Effect.forEach([1, 2, 3, 4], (i) => tasks.interruptible.kiq(`${root}:runs:${i}`, 60_000)))
      for (const i of [1, 2, 3, 4]) yield* eventually(() => raw.get(`${root}:runs:${i}`), (v) => v === "1", 5_000)
      assert.deepStrictEqual(yield* inCtx(ctx, Effect.forEach(handles, (h) => h.cancel())), [true, true, true, true])
      for (const i of [1, 2, 3, 4]) yield* eventually(() => raw.get(`${root}:runs:${i}:interrupted`), (v) => v === "1", 5_000)
      yield* eventually(() => Effect.runPromise(inCtx(ctx, Effect.flatMap(Broker, (b) => b.size))), (n) => n === 0, 5_000)
      for (const i of [1, 2, 3, 4]) assert.strictEqual(yield* Effect.promise(() => raw.get(`${root}:runs:${i}`)), "1")
    }))

  it.scopedLive("cancelling a finished task is refused and its result kept", () =>
    Effect.gen(function*() {
      const ctx = yield* infraIn(uniqueName("w-cancel-done"))
      yield* startWorker(ctx)
      const handle = yield* inCtx(ctx, tasks.add.kiq(20, 22))
      assert.strictEqual(yield* inCtx(ctx, handle.result({ timeout: "5 seconds" })), 42)
      assert.isFalse(yield* inCtx(ctx, handle.cancel()))
      assert.strictEqual(yield* inCtx(ctx, handle.result()), 42)
    }))
})

describe("Worker: progress", () => {
  it.scopedLive("a handler's progress is pushed to handle.progress in order, which ends with the task; getProgress reads the last", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-progress")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx)
      const handle = yield* inCtx(ctx, tasks.steps.kiq(5, 30))
      const seen = yield* inCtx(ctx, Stream.runCollect(handle.progress)).pipe(Effect.timeout("10 seconds"))
      const steps = Chunk.toReadonlyArray(seen).map((p) => (p.meta as { step: number }).step)
      assert.isAtLeast(steps.length, 3, "pushed as it happened, not only the last")
      assert.deepStrictEqual(steps, [...steps].sort((a, b) => a - b), "in order")
      assert.strictEqual(steps[steps.length - 1], 5, "the last state is never lost")
      assert.strictEqual(yield* inCtx(ctx, handle.result()), "done")
      const last = Option.getOrThrow(yield* inCtx(ctx, handle.getProgress))
      assert.deepStrictEqual(last, { state: "STEP", meta: { step: 5, of: 5 } })
      // taskiq-redis's layout: the progress JSON beside the result.
      const stored = yield* Effect.promise(() => raw.get(`${names(root).resultPrefix}:${handle.taskId}__progress`))
      assert.deepStrictEqual(JSON.parse(stored!), { state: "STEP", meta: { step: 5, of: 5 } })
    }))

  it.scopedLive("watching a finished task's progress gives its last state and ends", () =>
    Effect.gen(function*() {
      const ctx = yield* infraIn(uniqueName("w-progress-done"))
      yield* startWorker(ctx)
      const handle = yield* inCtx(ctx, tasks.steps.kiq(2, 1))
      yield* inCtx(ctx, handle.result({ timeout: "5 seconds" }))
      const seen = yield* inCtx(ctx, Stream.runCollect(handle.progress)).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(Chunk.toReadonlyArray(seen), [{ state: "STEP", meta: { step: 2, of: 2 } }])
    }))
})

describe("Worker: priorities and deduplication", () => {
  it.scopedLive("queued high-priority tasks run before normal and low ones", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-priority")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const order = `${root}:order`
      const submit = (label: string, priority?: "high" | "low") =>
        inCtx(ctx, scheduleWith(tasks.record, { priority }, order, label, 0))
      for (let i = 0; i < 3; i++) yield* submit(`low${i}`, "low")
      for (let i = 0; i < 3; i++) yield* submit(`normal${i}`)
      const last = yield* Effect.forEach([0, 1, 2], (i) => submit(`high${i}`, "high"))
      yield* startWorker(ctx, { maxAsyncTasks: 1 })
      yield* eventually(() => raw.llen(order), (n) => n === 9, 10_000)
      const ran = yield* Effect.promise(() => raw.lrange(order, 0, -1))
      assert.deepStrictEqual(ran.slice(0, 3), ["high0", "high1", "high2"])
      assert.deepStrictEqual(ran.slice(3).filter((l) => l.startsWith("normal")), ["normal0", "normal1", "normal2"])
      const result = yield* inCtx(ctx, last[2]!.waitResult())
      assert.strictEqual(result.labels.priority, "high", "the label travels with the task")
    }))

  it.scopedLive("two workers racing: the high-priority tasks are the first three to start", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-priority-race")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const order = `${root}:order`
      for (let i = 0; i < 6; i++) yield* inCtx(ctx, scheduleWith(tasks.record, {}, order, `normal${i}`, 50))
      for (let i = 0; i < 3; i++) yield* inCtx(ctx, scheduleWith(tasks.record, { priority: "high" }, order, `high${i}`, 50))
      yield* startWorker(ctx, { maxAsyncTasks: 1 })
      yield* startWorker(ctx, { maxAsyncTasks: 1 })
      yield* eventually(() => raw.llen(order), (n) => n === 9, 10_000)
      const ran = yield* Effect.promise(() => raw.lrange(order, 0, -1))
      assert.deepStrictEqual([...ran.slice(0, 3)].sort(), ["high0", "high1", "high2"])
    }))

  it.scopedLive("a task's default priority applies to each submission, and a submission overrides it", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-priority-default")
      const ctx = yield* infraIn(root)
      const urgent = Task.make("t.urgent", (n: number) => Effect.succeed(n), { priority: "high" })
      const a = yield* inCtx(ctx, urgent.kiq(1))
      const b = yield* inCtx(ctx, scheduleWith(urgent, { priority: "low" }, 2))
      const { queueName } = names(root)
      const raw = yield* rawClient()
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(`${queueName}:priority:high`)), 1)
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(`${queueName}:priority:low`)), 1)
      assert.notStrictEqual(a.taskId, b.taskId)
    }))

  it.scopedLive("an idempotency key: twenty racing submissions against two workers run the task once; after it finishes the key is free", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-dedup")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      yield* startWorker(ctx)
      yield* startWorker(ctx)
      const runs = `${root}:runs`
      const submit = inCtx(ctx, scheduleWith(tasks.countAndSleep, { idempotencyKey: "invoice-42" }, runs, 200))
      const handles = yield* Effect.all(Array.from({ length: 20 }, () => submit), { concurrency: "unbounded" })
      assert.strictEqual(new Set(handles.map((h) => h.taskId)).size, 1, "every caller got the same task")
      assert.strictEqual(handles.filter((h) => !h.deduplicated).length, 1)
      assert.strictEqual(yield* inCtx(ctx, handles[7]!.result({ timeout: "10 seconds" })), 1)
      assert.strictEqual(yield* Effect.promise(() => raw.get(runs)), "1")
      // The worker let the key go with the task's completion: the next submission runs again.
      const next = yield* eventually(
        () => Effect.runPromise(submit),
        (h) => !h.deduplicated,
        5_000
      )
      assert.notStrictEqual(next.taskId, handles[0]!.taskId)
      assert.strictEqual(yield* inCtx(ctx, next.result({ timeout: "10 seconds" })), 2)
    }))

  it.scopedLive("with idempotencyTtl the key is held for that long, finished or not; bad options are typed errors", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-dedup-ttl")
      const ctx = yield* infraIn(root)
      yield* startWorker(ctx)
      const submit = inCtx(ctx, scheduleWith(tasks.add, { idempotencyKey: "daily-report", idempotencyTtl: "400 millis" }, 1, 1))
      const first = yield* submit
      assert.strictEqual(yield* inCtx(ctx, first.result({ timeout: "5 seconds" })), 2)
      const again = yield* submit
      assert.isTrue(again.deduplicated)
      assert.strictEqual(again.taskId, first.taskId)
      yield* Effect.sleep("500 millis")
      assert.isFalse((yield* submit).deduplicated)
      const bad = yield* inCtx(ctx, scheduleWith(tasks.add, { idempotencyKey: "" }, 1, 1)).pipe(Effect.flip)
      assert.strictEqual(bad._tag, "InvalidTask")
      assert.strictEqual((bad as Task.InvalidTask).reason, "InvalidOptions")
    }))
})

describe("Worker: signed messages", () => {
  it.scopedLive("a worker with a signing key runs signed tasks and dead-letters unsigned or forged ones unrun", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-signed")
      const { queueName, resultPrefix } = names(root)
      const signed = (keys: ReadonlyArray<string>) =>
        Layer.mergeAll(RedisBroker.layer({ queueName, signingKeys: keys }), RedisBackend.layer({ prefix: resultPrefix })).pipe(
          Layer.provide(RedisConnection.layer({ url: redisUrl })),
          Layer.orDie
        )
      yield* cleanupKeys(root)
      const ctx = yield* Layer.build(signed(["secret"]))
      const raw = yield* rawClient()
      yield* startWorker(ctx)
      const forged = (yield* Layer.build(signed(["not-the-secret"])))
      yield* inCtx(forged, tasks.countAndSleep.kiq(`${root}:forged`, 0))
      const unsigned: TaskMessage.TaskMessage = {
        taskId: TaskMessage.makeTaskId(),
        taskName: "t.count",
        labels: {},
        args: [`${root}:unsigned`, 0],
        kwargs: {}
      }
      yield* Effect.promise(() => raw.xadd(queueName, "*", "data", TaskMessage.encodeJson(unsigned)))
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(tasks.add.kiq(2, 3), (h) => h.result({ timeout: "5 seconds" }))), 5)
      const dead = yield* eventually(() => Effect.runPromise(inCtx(ctx, Effect.flatMap(Broker, (b) => b.deadLetters()))), (d) => d.length === 2, 5_000)
      assert.deepStrictEqual(dead.map((d) => /\((\w+)\)/.exec(d.reason)?.[1]).sort(), ["BadSignature", "Unsigned"])
      assert.isNull(yield* Effect.promise(() => raw.get(`${root}:forged`)), "the forged task never ran")
      assert.isNull(yield* Effect.promise(() => raw.get(`${root}:unsigned`)), "the unsigned task never ran")
      assert.isTrue(Option.isNone(yield* inCtx(ctx, Effect.flatMap(ResultBackend, (b) => b.get(unsigned.taskId)))), "no result under a claimed id")
    }))
})

describe("Worker with a Redis user that may not subscribe", () => {
  it.scopedLive("stops at start with a BrokerError that says which channels to grant, instead of hanging", () =>
    Effect.gen(function*() {
      const redis = yield* privateRedis({ acl: { user: "admin", password: "admin-pw" } })
      const admin = yield* rawClient(redis.url)
      // Keys and commands allowed, pub/sub channels not (Redis 7's default for new users is no channels).
      yield* Effect.promise(() => admin.call("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "resetchannels", "+@all"))
      const ctx = yield* Layer.build(Taskiq.layerRedis({ url: redis.urlWith("app:app-pw"), queueName: "acl-q" }))
      const exit = yield* Worker.run({ blockMs: 100 }).pipe(
        Effect.provide(Executor.layer(tasks.all)),
        Effect.provide(ctx),
        Effect.timeout("20 seconds"),
        Effect.exit
      )
      assert.isTrue(exit._tag === "Failure")
      const error = exit._tag === "Failure" ? String(exit.cause) : ""
      assert.include(error, "NOPERM")
      assert.include(error, "grant the Redis user &__taskiq_*")
      assert.notInclude(error, "app-pw")
    }), { timeout: 40_000 })
})

describe("Worker: bulk submission", () => {
  it.scopedLive("kiqMany submits a thousand tasks in a few round trips; each runs once and its handle gets its result", () =>
    Effect.gen(function*() {
      const ctx = yield* infraIn(uniqueName("w-bulk"))
      yield* startWorker(ctx)
      const handles = yield* inCtx(ctx, tasks.add.kiqMany(Array.from({ length: 1000 }, (_, i) => [i, 1] as const)))
      assert.strictEqual(new Set(handles.map((h) => h.taskId)).size, 1000)
      const sums = yield* inCtx(ctx, Effect.forEach(handles, (h) => h.result({ timeout: "20 seconds" }), { concurrency: "unbounded" }))
      assert.deepStrictEqual(sums, Array.from({ length: 1000 }, (_, i) => i + 1))
      const urgent = yield* inCtx(ctx, tasks.add.kiqMany([[40, 2]], { priority: "high", labels: { tenant: "acme" } }))
      const result = yield* inCtx(ctx, urgent[0]!.waitResult({ timeout: "5 seconds" }))
      assert.strictEqual(result.returnValue, 42)
      assert.strictEqual(result.labels.priority, "high")
      assert.strictEqual(result.labels.tenant, "acme")
    }))

  it.scopedLive("kiqMany with a delay or a time holds the whole batch in the delayed set, then every task runs, in its priority", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-bulk-later")
      const ctx = yield* infraIn(root)
      const raw = yield* rawClient()
      const { queueName } = names(root)
      const delayedSize = inCtx(ctx, Effect.flatMap(Broker, (b) => b.delayedSize))
      const later = yield* inCtx(ctx, tasks.add.kiqMany(Array.from({ length: 1500 }, (_, i) => [i, 1] as const), { delay: "400 millis" }))
      const atTime = yield* inCtx(ctx, tasks.add.kiqMany([[40, 2], [41, 2]], { at: new Date(Date.now() + 300), priority: "low" }))
      // Nothing is in the streams yet: every one waits in the delayed set (two scripts for the first 1,500, one for the rest).
      assert.strictEqual(yield* delayedSize, 1502)
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(queueName)), 0)
      const started = Date.now()
      yield* startWorker(ctx)
      const sums = yield* inCtx(ctx, Effect.forEach(later, (h) => h.result({ timeout: "20 seconds" }), { concurrency: "unbounded" }))
      assert.deepStrictEqual(sums, Array.from({ length: 1500 }, (_, i) => i + 1))
      const low = yield* inCtx(ctx, Effect.forEach(atTime, (h) => h.waitResult({ timeout: "5 seconds" })))
      assert.deepStrictEqual(low.map((r) => [r.returnValue, r.labels.priority]), [[42, "low"], [43, "low"]])
      assert.isAtLeast(Date.now() - started, 250, "not run before they were due")
      assert.strictEqual(yield* delayedSize, 0)
    }))

  it.scopedLive("kiqMany with a delay, signed: the moved messages keep their signatures and run", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-bulk-later-signed")
      const ctx = yield* infraIn(root, { signingKeys: ["bulk-secret"] })
      yield* startWorker(ctx)
      const handles = yield* inCtx(ctx, tasks.add.kiqMany([[1, 2], [3, 4]], { delay: "100 millis" }))
      assert.deepStrictEqual(yield* inCtx(ctx, Effect.forEach(handles, (h) => h.result({ timeout: "5 seconds" }))), [3, 7])
      assert.deepStrictEqual(yield* inCtx(ctx, Effect.flatMap(Broker, (b) => b.deadLetters())), [])
    }))

  it.scopedLive("kiqMany validates every submission before publishing any; idempotency keys are refused", () =>
    Effect.gen(function*() {
      const root = uniqueName("w-bulk-bad")
      const ctx = yield* infraIn(root)
      const strict = Task.make("t.strict", (n: number) => Effect.succeed(n), { args: Schema.Tuple(Schema.Number) })
      const bad = yield* inCtx(ctx, strict.kiqMany([[1], ["two" as unknown as number], [3]])).pipe(Effect.flip)
      assert.strictEqual(bad._tag, "InvalidTask")
      assert.strictEqual((bad as Task.InvalidTask).reason, "InvalidArguments")
      const keyed = yield* inCtx(ctx, strict.kiqMany([[1]], { idempotencyKey: "one-key" })).pipe(Effect.flip)
      assert.strictEqual((keyed as Task.InvalidTask).reason, "InvalidOptions")
      assert.include((keyed as Task.InvalidTask).detail, "a key names one submission")
      const badLater = yield* inCtx(ctx, strict.kiqMany([[1], ["two" as unknown as number]], { delay: "1 second" })).pipe(Effect.flip)
      assert.strictEqual((badLater as Task.InvalidTask).reason, "InvalidArguments")
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(Broker, (b) => b.size)), 0, "nothing was published")
      assert.strictEqual(yield* inCtx(ctx, Effect.flatMap(Broker, (b) => b.delayedSize)), 0, "nothing was scheduled")
    }))
})
