/**
 * What a running handler can know about its task: id, name, attempt, delivery count, labels.
 * Kept in a FiberRef that the executor sets on the slot fiber before each run (one write, no context
 * rebuilt per task); fibers a handler forks inherit it.
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import type { Labels } from "./TaskMessage.js"

/** The task a handler is running for. */
export interface TaskInfo {
  readonly taskId: string
  readonly taskName: string
  /** 1 on the first run; grows with each retry of a retry policy. */
  readonly attempt: number
  /** How many times the broker delivered this message (more than 1 after a worker died or shut down mid-task). */
  readonly deliveryCount: number
  readonly labels: Labels
}

/** The FiberRef behind `current`; the executor sets it. */
export const ref: FiberRef.FiberRef<Option.Option<TaskInfo>> = FiberRef.unsafeMake<Option.Option<TaskInfo>>(Option.none())

/** The running task; fails with `NoSuchElementException` outside a task handler. */
export const current: Effect.Effect<TaskInfo, import("effect/Cause").NoSuchElementException> = Effect.flatMap(
  FiberRef.get(ref),
  (info) => info
)

/** Runs `self` with its logs annotated with the running task's id, name and attempt (unchanged outside a task). */
export const withLogAnnotations = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(FiberRef.get(ref), Option.match({
    onNone: () => self,
    onSome: (info) => Effect.annotateLogs(self, { taskId: info.taskId, taskName: info.taskName, attempt: info.attempt })
  }))
