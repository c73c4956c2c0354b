/**
 * How a Redis result backend stores results, shared with a Redis consumer on the same connection so that a
 * worker saves a batch's results and acknowledges their messages in one script: one round trip, and the
 * acknowledgement still happens only after every result of the batch is stored.
 */
import type * as Either from "effect/Either"
import type { Redis } from "ioredis"
import type { BackendError } from "../ResultBackend.js"
import type { TaskResult } from "../TaskResult.js"

/** Where results go, and how they are encoded. */
export interface RedisResultStore {
  readonly client: Redis
  /** The cancelled-tasks set: results of cancelled tasks are never overwritten. */
  readonly cancelledKey: string
  /**
   * Processes waiting on results' own channels (a sorted set scored by when each registration lapses): a worker
   * publishes there only while it holds a live one; waiters on a process inbox need no such publish.
   */
  readonly watchersKey: string
  readonly keyOf: (taskId: string) => string
  readonly ttlMs: number
  readonly encode: (taskId: string, result: TaskResult) => Either.Either<string, BackendError>
}

/** A finished task, as the worker hands it over to be saved and acknowledged. */
export interface Finished<D> {
  readonly delivery: D
  readonly taskId: string
  readonly result: TaskResult
}
