/**
 * What a producer gets back for a submitted task: a way to wait for its result.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { type BackendError, ResultBackend } from "./ResultBackend.js"
import type { TaskProgress } from "./TaskProgress.js"
import * as TaskResult from "./TaskResult.js"

/** No result arrived in time. The task may still run later; most often no worker is consuming the queue. */
export class ResultTimeout extends Schema.TaggedError<ResultTimeout>()("ResultTimeout", {
  taskId: Schema.String,
  taskName: Schema.String,
  queue: Schema.String,
  waitedMs: Schema.Number
}) {
  override get message(): string {
    return `No result for task ${this.taskName} (${this.taskId}) after ${this.waitedMs} ms. ` +
      `Is a worker consuming queue "${this.queue}"? Start one with \`npx taskiq worker <module>:<export>\`, ` +
      `or wait longer with waitResult({ timeout }).`
  }
}

/** The task ran and failed; `excType` and `excMessage` say how (see `error.pretty` for the remote cause). */
export class TaskFailed extends Schema.TaggedError<TaskFailed>()("TaskFailed", {
  taskId: Schema.String,
  taskName: Schema.String,
  excType: Schema.String,
  excMessage: Schema.String,
  pretty: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `Task ${this.taskName} (${this.taskId}) failed with ${this.excType}: ${this.excMessage}`
  }
}

/** The task was cancelled (`handle.cancel()`) before it finished; it never ran, or was interrupted. */
export class TaskCancelled extends Schema.TaggedError<TaskCancelled>()("TaskCancelled", {
  taskId: Schema.String,
  taskName: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `Task ${this.taskName} (${this.taskId}) was cancelled: ${this.reason}`
  }
}

/** The `excType` of a cancelled task's stored result. */
export const cancelledExcType = "TaskCancelled"

/** The result stored for a cancelled task: a failure with `excType` `TaskCancelled`. */
export const cancelledResult = (reason: string): TaskResult.TaskResult =>
  TaskResult.fail({ excType: cancelledExcType, excMessage: [reason], excModule: "effect-taskiq" }, 0)

/** Whether a result says the task was cancelled. */
export const isCancelled = (result: TaskResult.TaskResult): boolean => result.isErr && result.error?.excType === cancelledExcType

/** Cancels a task by id: a queued task never starts, a running one is interrupted; `false` if it had already finished. */
export const cancel = (taskId: string, reason = "cancelled by request"): Effect.Effect<boolean, BackendError, ResultBackend> =>
  Effect.flatMap(ResultBackend, (backend) => backend.cancel(taskId, cancelledResult(reason)))

/** What waiting for a result can fail with. */
export type WaitError = ResultTimeout | BackendError | TaskResult.ResultDecodeError

/** Options for waiting. */
export interface WaitOptions {
  /** How long to wait (default 60 seconds; `Duration.infinity` waits for ever). */
  readonly timeout?: Duration.DurationInput | undefined
}

/** A submitted task. `A` is its success type, `E` its typed failure (when it declared a failure Schema). */
export interface TaskHandle<A = unknown, E = never> {
  readonly taskId: string
  readonly taskName: string
  readonly queueName: string
  /** Waits for the result, success or failure alike; fails only when no result can be had. */
  readonly waitResult: (options?: WaitOptions) => Effect.Effect<TaskResult.TaskResult<A | null>, WaitError, ResultBackend>
  /** Waits for the value: the task's own typed error (or `TaskFailed`, `TaskCancelled`) when it failed. */
  readonly result: (options?: WaitOptions) => Effect.Effect<A, E | TaskFailed | TaskCancelled | WaitError, ResultBackend>
  /** Cancels the task: a queued task never starts, a running one is interrupted; `false` if it had already finished. */
  readonly cancel: (reason?: string) => Effect.Effect<boolean, BackendError, ResultBackend>
  /** The task's progress as its handler reports it, pushed; ends when the task finishes. */
  readonly progress: Stream.Stream<TaskProgress, BackendError, ResultBackend>
  /** The task's last reported progress, read once. */
  readonly getProgress: Effect.Effect<Option.Option<TaskProgress>, BackendError, ResultBackend>
  /** `true` when this submission was deduplicated: the handle is the task that already held the idempotency key. */
  readonly deduplicated: boolean
}

/** The codecs a handle decodes with; a task's schemas, compiled once per task. */
export interface ResultCodecs<A, E> {
  readonly decodeSuccess: ((u: unknown) => Either.Either<A, ParseResult.ParseError>) | undefined
  readonly decodeFailure: ((u: unknown) => Either.Either<E, ParseResult.ParseError>) | undefined
}

/** The default wait. */
export const defaultTimeout: Duration.Duration = Duration.seconds(60)

// A class, so that a handle costs one small object: producers make one per submission.
class Handle<A, E> implements TaskHandle<A, E> {
  constructor(
    readonly taskId: string,
    readonly taskName: string,
    readonly queueName: string,
    readonly codecs: ResultCodecs<A, E>,
    readonly deduplicated: boolean,
    readonly replyTo: string | undefined
  ) {}

  waitResult(options?: WaitOptions): Effect.Effect<TaskResult.TaskResult<A | null>, WaitError, ResultBackend> {
    const { codecs, queueName, replyTo, taskId, taskName } = this
    return Effect.flatMap(ResultBackend, (backend) => {
      const timeout = Duration.decode(options?.timeout ?? defaultTimeout)
      return backend.wait(taskId, timeout, replyTo).pipe(
        Effect.flatMap(Option.match({
          onNone: (): Effect.Effect<TaskResult.TaskResult<A | null>, WaitError> =>
            Effect.fail(new ResultTimeout({ taskId, taskName, queue: queueName, waitedMs: Duration.toMillis(timeout) })),
          onSome: (result): Effect.Effect<TaskResult.TaskResult<A | null>, WaitError> => {
            if (result.isErr || codecs.decodeSuccess === undefined) {
              return Effect.succeed(result as TaskResult.TaskResult<A | null>)
            }
            const decoded = codecs.decodeSuccess(result.returnValue)
            return Either.isRight(decoded)
              ? Effect.succeed({ ...result, returnValue: decoded.right })
              : Effect.fail(
                new TaskResult.ResultDecodeError({
                  taskId,
                  detail: `return value does not match the task's success schema: ${
                    ParseResult.TreeFormatter.formatErrorSync(decoded.left)
                  }`
                })
              )
          }
        }))
      )
    })
  }

  result(options?: WaitOptions): Effect.Effect<A, E | TaskFailed | TaskCancelled | WaitError, ResultBackend> {
    const { codecs, taskId, taskName } = this
    return Effect.flatMap(this.waitResult(options), (r): Effect.Effect<A, E | TaskFailed | TaskCancelled | WaitError> => {
      if (!r.isErr) return Effect.succeed(r.returnValue as A)
      const error = r.error ?? { excType: "UnknownError", excMessage: [], excModule: "builtins" }
      if (isCancelled(r)) return Effect.fail(new TaskCancelled({ taskId, taskName, reason: TaskResult.errorMessage(error) }))
      if (codecs.decodeFailure !== undefined && error.value !== undefined) {
        const typed = codecs.decodeFailure(error.value)
        if (Either.isRight(typed)) return Effect.fail(typed.right)
      }
      return Effect.fail(
        new TaskFailed({
          taskId,
          taskName,
          excType: error.excType,
          excMessage: TaskResult.errorMessage(error),
          pretty: error.pretty
        })
      )
    })
  }

  cancel(reason?: string): Effect.Effect<boolean, BackendError, ResultBackend> {
    return cancel(this.taskId, reason)
  }

  get progress(): Stream.Stream<TaskProgress, BackendError, ResultBackend> {
    const taskId = this.taskId
    return Stream.unwrap(Effect.map(ResultBackend, (backend) => backend.progress(taskId)))
  }

  get getProgress(): Effect.Effect<Option.Option<TaskProgress>, BackendError, ResultBackend> {
    const taskId = this.taskId
    return Effect.flatMap(ResultBackend, (backend) => backend.getProgress(taskId))
  }
}

const noCodecs: ResultCodecs<any, any> = { decodeSuccess: undefined, decodeFailure: undefined }

/** A handle for a task id (also one submitted by another process). */
export const make = <A = unknown, E = never>(
  taskId: string,
  taskName: string,
  queueName: string,
  codecs: ResultCodecs<A, E> = noCodecs,
  deduplicated = false,
  replyTo?: string
): TaskHandle<A, E> => new Handle(taskId, taskName, queueName, codecs, deduplicated, replyTo)
