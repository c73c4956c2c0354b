/**
 * What a running handler can know about its task: id, name, attempt, delivery count, labels.
 * Kept in a FiberRef that the executor sets on the slot fiber before each run (one write, no context
 * rebuilt per task); fibers a handler forks inherit it.
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
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

/**
 * Where the running task is kept. A worker slot owns one cell and the executor updates it in place for each
 * task (setting a FiberRef per task cost ≈ 8 % of a no-op task's CPU); a fiber a handler forks gets a copy,
 * so it keeps the task it was forked for after the slot has moved on.
 */
export interface Cell {
  info: TaskInfo | undefined
}

/** The cell of fibers that run no task (never written to). */
export const empty: Cell = Object.freeze({ info: undefined }) as Cell

/** The FiberRef behind `current`; the executor fills it. */
export const ref: FiberRef.FiberRef<Cell> = FiberRef.unsafeMake<Cell>(empty, {
  fork: (cell) => (cell.info === undefined ? empty : { info: cell.info }),
  join: (parent) => parent
})

/** Makes `info` the running task of this fiber: in place in the cell it owns, else in a new cell. */
export const set = (fiber: Fiber.RuntimeFiber<unknown, unknown>, info: TaskInfo): Effect.Effect<void> => {
  const cell = fiber.getFiberRef(ref)
  if (cell === empty) return FiberRef.set(ref, { info })
  cell.info = info
  return Effect.void
}

/** A cell of its own for this fiber (a worker slot), so that each task's info is written in place. */
export const own: Effect.Effect<void> = Effect.suspend(() => FiberRef.set(ref, { info: undefined }))

/** The running task, if any. */
export const option: Effect.Effect<Option.Option<TaskInfo>> = Effect.map(FiberRef.get(ref), (cell) => Option.fromNullable(cell.info))

/** The running task; fails with `NoSuchElementException` outside a task handler. */
export const current: Effect.Effect<TaskInfo, import("effect/Cause").NoSuchElementException> = Effect.flatMap(option, (info) => info)

/** Runs `self` with its logs annotated with the running task's id, name and attempt (unchanged outside a task). */
export const withLogAnnotations = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(option, Option.match({
    onNone: () => self,
    onSome: (info) => Effect.annotateLogs(self, { taskId: info.taskId, taskName: info.taskName, attempt: info.attempt })
  }))
