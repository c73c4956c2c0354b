/**
 * Worker child for BullMQ: one `Worker` with the benchmark's concurrency and a no-op async processor;
 * every other option at its default. Finished jobs are counted on the `completed` event.
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
  return { done: () => done, stop: () => worker.close() }
})
