/**
 * The producer API: `scheduleAsync(task, ...args)` submits a task and returns its handle.
 */
import type * as Effect from "effect/Effect"
import type { Broker } from "./Broker.js"
import * as Task from "./Task.js"
import type { TaskHandle } from "./TaskHandle.js"

/** Submits a declared task with these arguments; the handle waits for its result. */
export const scheduleAsync = <Args extends ReadonlyArray<any>, A, E, R>(
  task: Task.Task<Args, A, E, R>,
  ...args: Args
): Effect.Effect<TaskHandle<A, E>, Task.ScheduleError, Broker> => Task.submit(task, args, {})

/** Submits a declared task with per-submission labels or keyword arguments. */
export const scheduleWith = <Args extends ReadonlyArray<any>, A, E, R>(
  task: Task.Task<Args, A, E, R>,
  options: Task.SubmitOptions,
  ...args: Args
): Effect.Effect<TaskHandle<A, E>, Task.ScheduleError, Broker> => Task.submit(task, args, options)
