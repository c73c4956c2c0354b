/**
 * `npm run demo`: starts a worker process (`taskiq worker examples/app.ts:app --workers 1`), submits tasks
 * through every API — Effect (a declared task, `scheduleAsync`, kc.exec, a typed failure) and TaskiqClient —
 * prints the results, then stops the worker it started (SIGTERM to its pid: a clean drain, exit code 0).
 * Uses the Redis at TASKIQ_REDIS_URL when one answers; otherwise the same program runs on the in-memory
 * layers with a worker in this process, and says so first.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { join } from "node:path"
import { NodeRuntime } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import { Broker, Executor, Main, scheduleAsync, Taskiq, TaskiqClient, TaskResult, Worker } from "effect-taskiq"
import { app } from "./app.js"
import * as kc from "./kc_tasks.js"
import { add, DivisionByZero, divide, slowEcho, tasks } from "./tasks.js"

const root = join(import.meta.dirname, "..")
const seconds = (s: number) => `${s.toFixed(4)}s`

/** The worker command as a child process, until it consumes; stopped by pid (SIGTERM, drain, exit 0) with the scope. */
const workerProcess = Effect.acquireRelease(
  Effect.async<{ readonly child: ChildProcess; readonly log: () => string }, Error>((resume) => {
    const child = spawn(
      process.execPath,
      [join(root, "bin/taskiq.mjs"), "worker", "examples/app.ts:app", "--workers", "1"],
      { cwd: root, stdio: ["ignore", "inherit", "pipe"] }
    )
    let log = ""
    let done = false
    const settle = (effect: Effect.Effect<{ readonly child: ChildProcess; readonly log: () => string }, Error>) => {
      if (!done) (done = true), resume(effect)
    }
    child.stderr!.on("data", (chunk: Buffer) => {
      log += chunk.toString() // always drained, so the worker never blocks on a full pipe
      const consuming = done ? null : /^.*consuming ".*$/m.exec(log)
      if (consuming !== null) {
        console.log(`worker process started (pid ${child.pid}): ${consuming[0].replace(/^\S+\s+\S+\s+/, "")}`)
        settle(Effect.succeed({ child, log: () => log }))
      }
    })
    child.once("exit", (code, signal) =>
      settle(Effect.fail(new Error(`the worker exited (${signal ?? `code ${code}`}) before consuming:\n${log}`))))
    child.once("error", (e) => settle(Effect.fail(e)))
    return Effect.sync(() => child.kill("SIGKILL")) // interrupted while starting
  }).pipe(Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new Error("the worker did not start within 60 s") })),
  ({ child, log }) =>
    Effect.async<void>((resume) => {
      if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000)
      child.once("exit", (code, signal) => {
        clearTimeout(timer)
        if (code === 0) console.log(`worker process (pid ${child.pid}) stopped: drained, exit code 0`)
        else {
          console.error(`worker process (pid ${child.pid}) stopped with ${signal ?? `exit code ${code}`}:\n${log()}`)
          process.exitCode = 1
        }
        resume(Effect.void)
      })
      process.kill(child.pid!, "SIGTERM")
    })
)

/** Effect: a declared task, scheduleAsync, kc.exec, a typed failure, concurrency. */
const effectApi = Effect.gen(function*() {
  const handle = yield* add.kiq(1, 2)
  const result = yield* handle.waitResult({ timeout: "10 seconds" })
  console.log(`Effect  my.add(1, 2): isErr=${result.isErr} returnValue=${result.returnValue} executionTime=${seconds(result.executionTime)}`)

  const sum = yield* scheduleAsync(add, 40, 2).pipe(Effect.flatMap((h) => h.result()))
  console.log(`Effect  scheduleAsync(add, 40, 2) -> ${sum}`)

  const viaExec = yield* scheduleAsync(kc.add, 1, 2).pipe(Effect.flatMap((h) => h.waitResult()))
  console.log(`Effect  kc.exec add(1, 2): isErr=${viaExec.isErr} returnValue=${viaExec.returnValue} error=${viaExec.error}`)

  const failed = yield* divide.kiq(1, 0).pipe(
    Effect.flatMap((h) => h.result()),
    Effect.catchTag("DivisionByZero", (e: DivisionByZero) => Effect.succeed(`caught DivisionByZero (dividend ${e.dividend})`))
  )
  console.log(`Effect  my.divide(1, 0) -> ${failed}`)

  const started = Date.now()
  const echoes = yield* Effect.forEach(
    Array.from({ length: 10 }, (_, i) => i),
    (i) => slowEcho.kiq(`echo ${i}`, 200).pipe(Effect.flatMap((h) => h.result())),
    { concurrency: "unbounded" }
  )
  console.log(`Effect  10 x my.slow_echo(200 ms) at once: ${Date.now() - started} ms (${echoes.length} echoes)`)
})

/** TaskiqClient: Promises, plain objects. */
const clientApi = async (tc: TaskiqClient) => {
  const result = await (await tc.scheduleAsync(kc.add, 2, 3)).waitResult(10)
  console.log(`Client  kc.exec add(2, 3): isErr=${result.isErr} returnValue=${result.returnValue} executionTime=${seconds(result.executionTime)}`)
  console.log(`Client  my.divide(6, 3) -> ${await (await tc.scheduleAsync(divide, 6, 3)).result(10)}`)
  const failed = await (await tc.scheduleAsync(kc.parseAmount, "12,5")).waitResult(10)
  console.log(`Client  kc.exec parseAmount("12,5"): isErr=${failed.isErr} error=${failed.error?.excType}: ${TaskResult.errorMessage(failed.error!)}`)
}

const main = Effect.gen(function*() {
  // Redis if one answers (its layer stays open for the demo), else the in-memory twins.
  const redis = yield* Layer.build(app.layer).pipe(Effect.timeout("3 seconds"), Effect.option)
  const infra = redis._tag === "Some" ? redis.value : yield* Layer.build(Taskiq.layerMemory())
  const queue = Context.get(infra, Broker.Broker).queueName
  const layer = Layer.succeedContext(infra)
  if (redis._tag === "Some") {
    console.log(`effect-taskiq demo on Redis (${process.env.TASKIQ_REDIS_URL ? "TASKIQ_REDIS_URL" : "redis://127.0.0.1:6379/0"}, queue ${queue})`)
    yield* workerProcess
  } else {
    console.log("effect-taskiq demo on the in-memory layers: no Redis answered at TASKIQ_REDIS_URL (the worker runs in this process)")
    yield* Layer.build(
      Worker.layer({ maxAsyncTasks: 16 }).pipe(Layer.provide(Executor.layerRegistry(tasks)), Layer.provide(Main.layer({ app, layer })))
    )
  }

  yield* effectApi.pipe(Effect.provide(Main.layer({ app, layer })))

  // The client shares the demo's connection here (and, in memory, its queue); on its own: new TaskiqClient({ app }).
  const tc = new TaskiqClient({ app, layer })
  yield* Effect.acquireRelease(Effect.tryPromise(() => tc.startup()), () => Effect.promise(() => tc.shutdown()))
  yield* Effect.tryPromise(() => clientApi(tc))
})

NodeRuntime.runMain(Effect.scoped(main))
