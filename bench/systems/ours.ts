/**
 * effect-taskiq, producer side: a `ManagedRuntime` over `Taskiq.layerRedis`, and each workload written as
 * one Effect (so what is measured is the library under Effect, not a `runPromise` per task).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { Broker, Taskiq } from "effect-taskiq"
import { noop } from "../tasks.js"
import { batches, withTimeout } from "../util.js"
import type { OursWorkerConfig } from "../worker-ours.js"
import type { Target, TargetOptions } from "./target.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

export const makeOurs = async (options: TargetOptions): Promise<Target> => {
  const queueName = `${options.root}-q`
  const resultPrefix = `${options.root}-r`
  const runtime = ManagedRuntime.make(Taskiq.layerRedis({ url: options.url, queueName, resultPrefix }))
  await withTimeout(runtime.runtime(), 10_000, "connecting the effect-taskiq producer")

  return {
    system: "ours",
    root: options.root,
    resultPrefix,
    sequential: (n) => runtime.runPromise(Effect.forEach(range(n), () => noop.kiq(), { discard: true })),
    concurrent: (n, inFlight) =>
      runtime.runPromise(Effect.forEach(range(n), () => noop.kiq(), { concurrency: inFlight, discard: true })),
    // One kiqMany per batch (as BullMQ's addBulk): one script per thousand messages.
    batched: (n, batch) =>
      runtime.runPromise(Effect.forEach(
        batches(n, batch),
        (size) => noop.kiqMany(Array.from({ length: size }, () => [] as [])),
        { discard: true }
      )),
    outstanding: () => runtime.runPromise(Effect.flatMap(Broker.Broker, (broker) => broker.size)),
    roundTrips: (m, timeoutMs) =>
      runtime.runPromise(Effect.gen(function*() {
        const latencies: Array<number> = []
        for (let i = 0; i < m; i++) {
          const started = performance.now()
          const handle = yield* noop.kiq()
          const result = yield* handle.waitResult({ timeout: Duration.millis(timeoutMs) })
          latencies.push(performance.now() - started)
          if (result.isErr) return yield* Effect.dieMessage(`the no-op task failed: ${JSON.stringify(result.error)}`)
        }
        return latencies
      })),
    workerSpec: (concurrency, label, nodeArgs) => ({
      script: "./worker-ours.ts",
      label,
      config: {
        url: options.url,
        queueName,
        resultPrefix,
        concurrency,
        prefetch: options.prefetch,
        v8Pretenuring: options.v8Pretenuring
      } satisfies OursWorkerConfig,
      nodeArgs: nodeArgs ?? []
    }),
    close: () => withTimeout(runtime.dispose(), 10_000, "closing the effect-taskiq producer")
  }
}
