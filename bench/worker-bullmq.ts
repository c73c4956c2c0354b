/**
 * Worker child for BullMQ: one `Worker` with the benchmark's concurrency and a no-op async processor;
 * every other option at its default. Finished jobs are counted on the `completed` event. Pause and resume
 * are BullMQ's own, of this worker (not of the queue): `pause()` lets the active jobs finish first.
 */
import { type ConnectionOptions, Worker } from "bullmq"
import { runChild } from "./worker-common.js"

export interface BullmqWorkerConfig {
  readonly connection: ConnectionOptions
  readonly prefix: string
  readonly queueName: string
  readonly concurrency: number
}

runChild<BullmqWorkerConfig>(async (config) => {
  let done = 0
  const worker = new Worker(config.queueName, async () => null, {
    connection: config.connection,
    prefix: config.prefix,
    concurrency: config.concurrency
  })
  worker.on("completed", () => void done++)
  worker.on("error", (e) => console.error(`bullmq worker error: ${e.message}`))
  await worker.waitUntilReady()
  return {
    done: () => done,
    pause: () => worker.pause(),
    // resume() restarts the main loop without waiting for it; that loop's first fetch finds the jobs' marker at once.
    resume: () => worker.resume(),
    stop: () => worker.close()
  }
})
