/**
 * The producer API: `scheduleAsync(taskOrFn, ...args)` submits a declared task, or a plain exported
 * async function through the generic task `kc.exec`, and returns its handle.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { Broker } from "./Broker.js"
import * as Task from "./Task.js"
import type { TaskHandle } from "./TaskHandle.js"
import { execTaskName, TaskRegistry } from "./TaskRegistry.js"

/** A plain async function that `kc.exec` can run. */
export type AsyncFunction = (...args: Array<any>) => Promise<any>

const execTask = Task.make(
  execTaskName,
  (_module: string, _qualname: string, _args: ReadonlyArray<unknown>, _kwargs: Record<string, unknown>): unknown => undefined
)

type ExecArgs = [module: string, qualname: string, args: ReadonlyArray<unknown>, kwargs: Record<string, unknown>]

// Submits `fn` through `kc.exec`: finds it in the task registry, then `submit` turns each call's arguments into
// kc.exec's (the module and export it was found under, the arguments, the options' kwargs) and submits them with the
// rest of the options.
const viaExec = <A>(
  fn: AsyncFunction,
  options: Task.SubmitOptions,
  submit: (execArgs: (args: ReadonlyArray<unknown>) => ExecArgs, options: Task.SubmitOptions) => Effect.Effect<A, Task.ScheduleError, Broker>
): Effect.Effect<A, Task.ScheduleError, Broker | TaskRegistry> =>
  Effect.flatMap(TaskRegistry, (registry) => {
    const where = registry.locate(fn)
    if (Either.isLeft(where)) return Effect.fail(where.left)
    const { module, qualname } = where.right
    const kwargs = options.kwargs ?? {}
    return submit((args) => [module, qualname, args, kwargs], { ...options, kwargs: undefined })
  })

/** Submits a plain exported async function through `kc.exec`, found in the task registry. */
export const scheduleFunction = <F extends AsyncFunction>(
  fn: F,
  args: Parameters<F>,
  options: Task.SubmitOptions = {}
): Effect.Effect<TaskHandle<Awaited<ReturnType<F>>>, Task.ScheduleError, Broker | TaskRegistry> =>
  viaExec(fn, options, (execArgs, rest) => Task.submit(execTask, execArgs(args), rest)) as Effect.Effect<
    TaskHandle<Awaited<ReturnType<F>>>,
    Task.ScheduleError,
    Broker | TaskRegistry
  >

/** Submits a declared task, or an exported async function via `kc.exec`; the handle waits for its result. */
export const scheduleAsync: {
  <Args extends ReadonlyArray<any>, A, E, R>(
    task: Task.Task<Args, A, E, R>,
    ...args: Args
  ): Effect.Effect<TaskHandle<A, E>, Task.ScheduleError, Broker>
  <F extends AsyncFunction>(
    fn: F,
    ...args: Parameters<F>
  ): Effect.Effect<TaskHandle<Awaited<ReturnType<F>>>, Task.ScheduleError, Broker | TaskRegistry>
} = ((taskOrFn: unknown, ...args: Array<unknown>) =>
  Task.isTask(taskOrFn)
    ? Task.submit(taskOrFn, args, {})
    : scheduleFunction(taskOrFn as AsyncFunction, args)) as never

/** Submits with per-submission labels or keyword arguments. */
export const scheduleWith: {
  <Args extends ReadonlyArray<any>, A, E, R>(
    task: Task.Task<Args, A, E, R>,
    options: Task.SubmitOptions,
    ...args: Args
  ): Effect.Effect<TaskHandle<A, E>, Task.ScheduleError, Broker>
  <F extends AsyncFunction>(
    fn: F,
    options: Task.SubmitOptions,
    ...args: Parameters<F>
  ): Effect.Effect<TaskHandle<Awaited<ReturnType<F>>>, Task.ScheduleError, Broker | TaskRegistry>
} = ((taskOrFn: unknown, options: Task.SubmitOptions, ...args: Array<unknown>) =>
  Task.isTask(taskOrFn)
    ? Task.submit(taskOrFn, args, options)
    : scheduleFunction(taskOrFn as AsyncFunction, args, options)) as never

/**
 * Submits many runs of a declared task, or of an exported async function via `kc.exec`, in one round trip; their
 * handles, in order. Every argument list is checked before anything is published. Options as
 * `kiqMany` takes them (a `delay` or `at` holds them all; no `idempotencyKey`).
 */
export const scheduleMany: {
  <Args extends ReadonlyArray<any>, A, E, R>(
    task: Task.Task<Args, A, E, R>,
    argsList: Iterable<NoInfer<Args>>,
    options?: Task.SubmitOptions
  ): Effect.Effect<Array<TaskHandle<A, E>>, Task.ScheduleError, Broker>
  <F extends AsyncFunction>(
    fn: F,
    argsList: Iterable<Parameters<F>>,
    options?: Task.SubmitOptions
  ): Effect.Effect<Array<TaskHandle<Awaited<ReturnType<F>>>>, Task.ScheduleError, Broker | TaskRegistry>
} = ((taskOrFn: unknown, argsList: Iterable<ReadonlyArray<unknown>>, options: Task.SubmitOptions = {}) =>
  Task.isTask(taskOrFn)
    ? Task.submitMany(taskOrFn, argsList, options)
    : viaExec(taskOrFn as AsyncFunction, options, (execArgs, rest) => Task.submitMany(execTask, Array.from(argsList, execArgs), rest))) as never
