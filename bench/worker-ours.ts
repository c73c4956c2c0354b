/**
 * Worker child for effect-taskiq: `Worker.layer` + `Executor.layer([noop])` + `Taskiq.layerRedis`, with
 * `maxAsyncTasks` set to the benchmark's concurrency, `maxPrefetch` to `--prefetch` (default 0) and every other
 * option at its default.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Cause from "effect/Cause"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { Executor, Taskiq, Worker } from "effect-taskiq"
import { noop, runs } from "./tasks.js"
import { runChild } from "./worker-common.js"

export interface OursWorkerConfig {
  readonly url: string
  readonly queueName: string
  readonly resultPrefix: string
  readonly concurrency: number
  /** `maxPrefetch`: 0 unless the run asked for `--prefetch`. */
  readonly prefetch: number
}

runChild<OursWorkerConfig>((config) =>
  new Promise((resolve, reject) => {
    const live = Worker.layer({ maxAsyncTasks: config.concurrency, maxPrefetch: config.prefetch }).pipe(
      Layer.provide(Executor.layer([noop])),
      Layer.provide(Taskiq.layerRedis({ url: config.url, queueName: config.queueName, resultPrefix: config.resultPrefix }))
    )
    let ready = false
    const program = Layer.build(live).pipe(
      Effect.zipRight(Effect.sync(() => {
        ready = true
        resolve({
          done: () => runs.count,
          // Interrupting closes the layer's scope: the worker drains, hands back what it holds, and disconnects.
          stop: () => Effect.runPromise(Fiber.interrupt(fiber)).then(() => undefined)
        })
      })),
      Effect.zipRight(Effect.never),
      Effect.scoped,
      // The worker's start-up line would clutter the benchmark's output; warnings and errors still show.
      Logger.withMinimumLogLevel(LogLevel.Warning)
    )
    const fiber = Effect.runFork(program)
    fiber.addObserver((exit) => {
      if (!ready && Exit.isFailure(exit)) reject(new Error(Cause.pretty(exit.cause)))
    })
  })
)
