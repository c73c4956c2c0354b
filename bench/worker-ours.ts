/**
 * Worker child for effect-taskiq: `Worker.layer` + `Executor.layer([noop])` + `Taskiq.layerRedis`, with
 * `maxAsyncTasks` set to the benchmark's concurrency, `maxPrefetch` to `--prefetch` (default 0) and every other
 * option at its default; V8's allocation-site pretenuring is turned off, as `taskiq worker` does (`--v8-pretenuring`
 * keeps it). The Redis layers live as long as the process; the worker has a scope of its own, so
 * that a pause can close it (the worker drains and hands back what it holds, as at shutdown) and a resume can
 * build it again in this same warm process, as a restarted deployment would, minus the cold start.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Scope from "effect/Scope"
import { Executor, Taskiq, Worker } from "effect-taskiq"
import { turnOffPretenuring } from "../src/internal/v8Tuning.js"
import { noop, runs } from "./tasks.js"
import { runChild } from "./worker-common.js"

export interface OursWorkerConfig {
  readonly url: string
  readonly queueName: string
  readonly resultPrefix: string
  readonly concurrency: number
  /** `maxPrefetch`: 0 unless the run asked for `--prefetch`. */
  readonly prefetch: number
  /** Keep V8's allocation-site pretenuring on (`--v8-pretenuring`); else it is turned off, as `taskiq worker` does. */
  readonly v8Pretenuring: boolean
}

// The worker's start-up line would clutter the benchmark's output; warnings and errors still show.
const quiet = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> => Logger.withMinimumLogLevel(effect, LogLevel.Warning)

runChild<OursWorkerConfig>(async (config) => {
  // As the worker command runs a worker process (src/internal/v8Tuning.ts), before any task runs.
  if (!config.v8Pretenuring) turnOffPretenuring()
  const services = Executor.layer([noop]).pipe(
    Layer.provideMerge(Taskiq.layerRedis({ url: config.url, queueName: config.queueName, resultPrefix: config.resultPrefix }))
  )
  const worker = Worker.layer({ maxAsyncTasks: config.concurrency, maxPrefetch: config.prefetch })
  const outer = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(quiet(Layer.buildWithScope(services, outer))).catch(async (e) => {
    await Effect.runPromise(Scope.close(outer, Exit.void))
    throw e
  })

  // The worker's own scope while it runs; closing it interrupts the worker, which drains, hands back the rest,
  // and gives up its consumer (reader connection, subscription) before the close completes.
  let running: Scope.CloseableScope | undefined
  const start = async () => {
    if (running !== undefined) return
    const scope = Effect.runSync(Scope.make())
    await Effect.runPromise(quiet(Layer.buildWithScope(worker, scope).pipe(Effect.provide(context))))
    running = scope
  }
  const pause = async () => {
    const scope = running
    running = undefined
    if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
  }
  await start()
  return {
    done: () => runs.count,
    pause,
    resume: start,
    stop: async () => {
      await pause()
      await Effect.runPromise(Scope.close(outer, Exit.void))
    }
  }
})
