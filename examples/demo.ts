/**
 * `npm run demo`: a worker and a producer in one process. Uses the Redis at TASKIQ_REDIS_URL when one
 * answers; otherwise the same program runs on the in-memory layers, and says so first.
 */
import { Effect, Layer } from "effect"
import { Executor, Taskiq, Worker, scheduleAsync } from "effect-taskiq"
import { add, DivisionByZero, divide, slowEcho, tasks } from "./tasks.js"

const program = Effect.gen(function*() {
  // taskiq's classic: kick a declared task, wait for its result.
  const handle = yield* add.kiq(1, 2)
  const result = yield* handle.waitResult({ timeout: "5 seconds" })
  console.log(`my.add(1, 2): isErr=${result.isErr} returnValue=${result.returnValue} executionTime=${result.executionTime.toFixed(4)}s`)

  // The same through the one entry point.
  const sum = yield* scheduleAsync(add, 40, 2).pipe(Effect.flatMap((h) => h.result()))
  console.log(`scheduleAsync(add, 40, 2) -> ${sum}`)

  // A typed failure comes back as itself.
  const failed = yield* divide.kiq(1, 0).pipe(
    Effect.flatMap((h) => h.result()),
    Effect.catchTag("DivisionByZero", (e: DivisionByZero) => Effect.succeed(`caught DivisionByZero (dividend ${e.dividend})`))
  )
  console.log(`my.divide(1, 0) -> ${failed}`)

  // The untyped view of the same failure: isErr and error.
  const raw = yield* divide.kiq(1, 0).pipe(Effect.flatMap((h) => h.waitResult()))
  console.log(`waitResult: isErr=${raw.isErr} error.excType=${raw.error?.excType}`)

  // Ten slow tasks run concurrently on the worker's pool.
  const started = Date.now()
  const echoes = yield* Effect.forEach(
    Array.from({ length: 10 }, (_, i) => i),
    (i) => slowEcho.kiq(`echo ${i}`, 200).pipe(Effect.flatMap((h) => h.result())),
    { concurrency: "unbounded" }
  )
  console.log(`10 x my.slow_echo(200 ms) in ${Date.now() - started} ms: ${echoes.join(", ")}`)
})

const redisAnswers = Effect.scoped(Layer.build(Taskiq.layerRedisConfig())).pipe(
  Effect.timeout("2 seconds"),
  Effect.as(true),
  Effect.orElseSucceed(() => false)
)

const main = Effect.gen(function*() {
  const useRedis = yield* redisAnswers
  console.log(useRedis
    ? `effect-taskiq demo on Redis (${process.env.TASKIQ_REDIS_URL ? "TASKIQ_REDIS_URL" : "redis://127.0.0.1:6379/0"}, queue ${process.env.TASKIQ_QUEUE_NAME ?? "kc_taskiq_queue"})`
    : "effect-taskiq demo on the in-memory layers: no Redis answered at TASKIQ_REDIS_URL")
  const infra = useRedis ? Taskiq.layerRedisConfig() : Taskiq.layerMemory()
  const worker = Worker.layer({ maxAsyncTasks: 16 }).pipe(Layer.provide(Executor.layer(tasks)))
  yield* program.pipe(Effect.provide(worker.pipe(Layer.provideMerge(infra))))
})

main.pipe(Effect.runPromise).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
