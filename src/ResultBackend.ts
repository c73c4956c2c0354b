/**
 * The ResultBackend port: stores task results with a time to live and lets callers wait for them
 * without polling. Implementations: `ResultBackend/Redis.ts` (the default) and `ResultBackend/Memory.ts`.
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Either from "effect/Either"
import type { RedisResultStore } from "./internal/redisResultStore.js"
import type { TaskProgress } from "./TaskProgress.js"
import type { ResultDecodeError, TaskResult } from "./TaskResult.js"
import * as TaskResultCodec from "./TaskResult.js"

/** Why a result backend operation failed. `url` is always redacted. */
export class BackendError extends Schema.TaggedError<BackendError>()("BackendError", {
  reason: Schema.Literal("Connect", "Set", "Get", "Wait", "Config", "Encode", "TooLarge"),
  detail: Schema.String,
  taskId: Schema.optional(Schema.String),
  url: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    const where = [this.taskId && `task ${this.taskId}`, this.url && `url ${this.url}`].filter(Boolean).join(", ")
    return `Result backend ${this.reason} failed${where ? ` (${where})` : ""}: ${this.detail}`
  }
}

/** The result backend service. Results hold Schema-encoded (JSON-safe) values. */
export class ResultBackend extends Context.Tag("effect-taskiq/ResultBackend")<ResultBackend, {
  /** Stores a result (with the backend's TTL) and notifies whoever waits for it. */
  readonly set: (taskId: string, result: TaskResult) => Effect.Effect<void, BackendError>
  /** Stores several results in one round trip (the worker's batched completions). */
  readonly setMany: (entries: ReadonlyArray<readonly [taskId: string, result: TaskResult]>) => Effect.Effect<void, BackendError>
  /** Reads a result if it is there. */
  readonly get: (taskId: string) => Effect.Effect<Option.Option<TaskResult>, BackendError | ResultDecodeError>
  /**
   * Waits until the result is there, or `Option.none()` once `timeout` has passed. Pushed, never polled.
   * `replyTo`: the inbox the task's message asked its result to be pushed to (its `reply_to` label), if any.
   */
  readonly wait: (
    taskId: string,
    timeout: Duration.Duration,
    replyTo?: string | undefined
  ) => Effect.Effect<Option.Option<TaskResult>, BackendError | ResultDecodeError>
  /** Forgets a result (and its progress). */
  readonly delete: (taskId: string) => Effect.Effect<void, BackendError>
  /**
   * Cancels a task that has no result yet, atomically: stores `result` (a `TaskCancelled` failure), pushes it
   * to waiters and tells every worker. `false` when the task had already finished (its result is kept).
   */
  readonly cancel: (taskId: string, result: TaskResult) => Effect.Effect<boolean, BackendError>
  /**
   * Calls `onCancel` with the id of every task cancelled and not yet forgotten, then with each one cancelled
   * from now on, until the scope closes. A worker uses it to skip queued tasks and interrupt running ones.
   */
  readonly watchCancellations: (onCancel: (taskId: string) => void) => Effect.Effect<void, BackendError, Scope.Scope>
  /** Stores a running task's progress (taskiq's `TaskProgress`, beside the result) and pushes it to watchers. */
  readonly setProgress: (taskId: string, progress: TaskProgress) => Effect.Effect<void, BackendError>
  /** The task's last reported progress, if any. */
  readonly getProgress: (taskId: string) => Effect.Effect<Option.Option<TaskProgress>, BackendError>
  /**
   * The task's progress as it is reported: the last one stored first, then each new one, pushed; ends when
   * the task's result is stored.
   */
  readonly progress: (taskId: string) => Stream.Stream<TaskProgress, BackendError>
  /** Internal: where a Redis backend stores results, so a Redis consumer on the same connection can save and ack at once. */
  readonly redisStore?: RedisResultStore | undefined
}>() {}

/** How long a cancellation is remembered when the results' TTL is shorter: a queued task may wait that long. */
export const minCancelTtlMs = 24 * 3_600_000

/** Whether a failure to store is about the value itself (it will never be stored as it is), not the backend. */
export const isPermanent = (e: BackendError): boolean => e.reason === "Encode" || e.reason === "TooLarge"

/** The largest result stored by default: 16 MiB of JSON. */
export const defaultMaxResultBytes = 16 * 1024 * 1024

/**
 * Encodes a result for storage; a value JSON cannot carry (a BigInt, a cycle) is an `Encode` error, a JSON
 * over `maxBytes` a `TooLarge` one.
 */
export const encodeResult = (
  taskId: string,
  result: TaskResult,
  maxBytes: number = defaultMaxResultBytes
): Either.Either<string, BackendError> => {
  try {
    const json = TaskResultCodec.encodeJson(result)
    if (json.length * 3 > maxBytes && Buffer.byteLength(json) > maxBytes) {
      return Either.left(
        new BackendError({
          reason: "TooLarge",
          taskId,
          detail: `the result is ${Buffer.byteLength(json)} bytes of JSON, over maxResultBytes (${maxBytes}): ` +
            "store large outputs elsewhere (a file, an object store) and return a reference"
        })
      )
    }
    return Either.right(json)
  } catch (cause) {
    return Either.left(
      new BackendError({
        reason: "Encode",
        taskId,
        detail: `the result is not JSON-serializable (declare a success Schema): ${(cause as Error).message}`
      })
    )
  }
}

/** A result TTL given in seconds or in milliseconds, never both; and the largest result stored. */
export interface ResultTtlOptions {
  /** Results whose JSON is larger are not stored; the task's result is a `ResultTooLarge` error instead (default 16 MiB). */
  readonly maxResultBytes?: number | undefined
  /** Seconds a result is kept (taskiq-redis's `result_ex_time`). */
  readonly resultExTime?: number | undefined
  /** Milliseconds a result is kept (taskiq-redis's `result_px_time`). */
  readonly resultPxTime?: number | undefined
}

/** The default TTL: one hour. */
export const defaultResultTtlMs = 3_600_000

/** Resolves the TTL in milliseconds, or says what is wrong with it. */
export const resolveTtlMs = (options: ResultTtlOptions): number | string => {
  const { resultExTime: ex, resultPxTime: px } = options
  if (ex !== undefined && px !== undefined) {
    return "set the result TTL in seconds (resultExTime) or in milliseconds (resultPxTime), not both"
  }
  if (ex !== undefined) return Number.isFinite(ex) && ex > 0 ? Math.round(ex * 1000) : `resultExTime must be a positive number of seconds, got ${ex}`
  if (px !== undefined) return Number.isInteger(px) && px > 0 ? px : `resultPxTime must be a positive whole number of milliseconds, got ${px}`
  return defaultResultTtlMs
}
