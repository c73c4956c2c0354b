/**
 * Progress of a running task: a handler reports `{ state, meta }` (taskiq's `TaskProgress`), the worker
 * stores it beside the result and pushes it to whoever watches (`handle.progress`).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as CurrentTask from "./CurrentTask.js"
import type { BackendError } from "./ResultBackend.js"

/** A task's reported progress: a state name (taskiq uses `STARTED`, `SUCCESS`… or any string) and any JSON. */
export interface TaskProgress<Meta = unknown> {
  readonly state: string
  readonly meta: Meta
}

/** Progress can only be reported by a handler that a worker runs. */
export class NotInTask extends Schema.TaggedError<NotInTask>()("NotInTask", {
  detail: Schema.String
}) {
  override get message(): string {
    return `Progress cannot be reported here: ${this.detail}`
  }
}

/** What reporting progress can fail with. */
export type ProgressError = NotInTask | BackendError

/**
 * Where a worker sends progress; set once on each of its slot fibers (never per task), inherited by the
 * fibers a handler forks.
 */
export const reporterRef: FiberRef.FiberRef<
  Option.Option<(taskId: string, progress: TaskProgress) => Effect.Effect<void, BackendError>>
> = FiberRef.unsafeMake<Option.Option<(taskId: string, progress: TaskProgress) => Effect.Effect<void, BackendError>>>(
  Option.none()
)

const report = (state: string, meta: unknown): Effect.Effect<void, ProgressError> =>
  Effect.flatMap(CurrentTask.option, (task): Effect.Effect<void, ProgressError> =>
    Option.isNone(task)
      ? Effect.fail(new NotInTask({ detail: "no task is running on this fiber (call it from a task handler)" }))
      : Effect.flatMap(FiberRef.get(reporterRef), (reporter): Effect.Effect<void, ProgressError> =>
        Option.isNone(reporter)
          ? Effect.fail(new NotInTask({ detail: "this executor was run without a worker, so there is nowhere to report to" }))
          : reporter.value(task.value.taskId, { state, meta })))

/**
 * The progress service a handler uses; available in every handler without being provided (its default
 * reports to the worker running the task).
 */
export class Progress extends Context.Reference<Progress>()("effect-taskiq/Progress", {
  defaultValue: () => ({
    /** Stores `{ state, meta }` as the running task's progress and pushes it to watchers. */
    set: (state: string, meta: unknown = null): Effect.Effect<void, ProgressError> => report(state, meta)
  })
}) {}

/** Reports the running task's progress: `yield* setProgress("resizing", { done: 3, of: 10 })`. */
export const setProgress = (state: string, meta: unknown = null): Effect.Effect<void, ProgressError> =>
  Effect.flatMap(Progress, (progress) => progress.set(state, meta))

/** The JSON stored at `<result key>__progress` (taskiq-redis's layout). */
export const encodeJson = (progress: TaskProgress): string => JSON.stringify({ state: progress.state, meta: progress.meta ?? null })

/** Reads stored progress; anything without a string `state` is not progress. */
export const decodeJson = (json: string): Option.Option<TaskProgress> => {
  try {
    const u = JSON.parse(json) as { state?: unknown; meta?: unknown } | null
    return typeof u === "object" && u !== null && typeof u.state === "string"
      ? Option.some({ state: u.state, meta: u.meta ?? null })
      : Option.none()
  } catch {
    return Option.none()
  }
}
