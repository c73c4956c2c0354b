/**
 * The Executor: turns a message into a result. It looks the task up by name, decodes the arguments,
 * runs the handler under its timeout and encodes the outcome. It never fails: every outcome is a result.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as CurrentTask from "./CurrentTask.js"
import * as Task from "./Task.js"
import * as TaskRegistry from "./TaskRegistry.js"
import type { TaskMessage } from "./TaskMessage.js"
import * as TaskResult from "./TaskResult.js"

/** The task ran longer than its timeout and was interrupted. */
export class TaskTimeout extends Schema.TaggedError<TaskTimeout>()("TaskTimeout", {
  taskName: Schema.String,
  timeoutMs: Schema.Number
}) {
  override get message(): string {
    return `Task ${this.taskName} did not finish within ${this.timeoutMs} ms and was interrupted`
  }
}

/**
 * An outcome; `poison` is set when the message can never succeed and belongs in the dead-letter queue;
 * `interrupted` when the run was cut short by an interruption (not its own timeout).
 */
export interface Execution {
  readonly result: TaskResult.TaskResult
  readonly poison: string | undefined
  readonly interrupted?: boolean | undefined
  /** The task's retry policy wants another attempt: republish with these labels after this wait. */
  readonly retry?: { readonly delayMs: number; readonly labels: TaskMessage["labels"] } | undefined
}

// taskiq's `timeout` label (seconds) overrides the task's own timeout, per submission.
const timeoutOf = (labels: TaskMessage["labels"]): Duration.Duration | undefined => {
  const raw = labels.timeout
  if (raw === undefined || raw === null) return undefined
  const seconds = Number(raw)
  return Number.isFinite(seconds) && seconds > 0 ? Duration.millis(Math.round(seconds * 1000)) : undefined
}

const retriesOf = (labels: TaskMessage["labels"]): number => {
  const n = Number(labels[Task.retriesLabel] ?? 0)
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0
}

// Whether the failure in this cause should be retried under the policy, and after how long.
// The task's retry policy, as a submission overrides it with taskiq's `retry_on_error` / `max_retries` labels.
const policyFor = (task: Task.Any, labels: TaskMessage["labels"]): Task.RetryPolicy | undefined => {
  const on = labels[Task.retryOnErrorLabel]
  if (on === false || on === "false") return undefined
  const max = Number(labels[Task.maxRetriesLabel])
  const maxAttempts = labels[Task.maxRetriesLabel] !== undefined && Number.isInteger(max) && max >= 0 ? max + 1 : undefined
  if (maxAttempts === undefined) return on === true || on === "true" ? task.retry ?? {} : task.retry
  return { ...task.retry, maxAttempts }
}

const retryFor = (task: Task.Any, cause: Cause.Cause<unknown>, labels: TaskMessage["labels"]): Execution["retry"] => {
  const policy = policyFor(task, labels)
  if (policy === undefined || Cause.isInterruptedOnly(cause)) return undefined
  const failure = Cause.failureOption(cause)
  const error = Option.isSome(failure) ? failure.value : Option.getOrUndefined(Cause.dieOption(cause))
  if (error instanceof Task.InvalidTask || Task.isNonRetryable(error)) return undefined
  if (policy.while !== undefined && !policy.while(error)) return undefined
  const retries = retriesOf(labels) + 1
  const delay = Task.retryDelay(policy, retries)
  return delay === undefined ? undefined : { delayMs: Duration.toMillis(delay), labels: { ...labels, [Task.retriesLabel]: retries } }
}

/** The executor service. */
export class Executor extends Context.Tag("effect-taskiq/Executor")<Executor, {
  readonly execute: (message: TaskMessage, deliveryCount?: number) => Effect.Effect<Execution>
  /** The names of the tasks it can run. */
  readonly taskNames: ReadonlyArray<string>
  /**
   * For a fiber that runs task after task (a worker slot): gives it the handlers' services once, and an `execute`
   * that relies on them being there instead of providing them per task (a fiber-ref update and its undo each).
   */
  readonly withServices?: <A, E, R>(
    use: (execute: (message: TaskMessage, deliveryCount?: number) => Effect.Effect<Execution>) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
}>() {}

/** The services the handlers of these tasks need. */
export type TasksContext<T extends Task.Any> = T extends Task.Task<any, any, any, infer R> ? R : never

const ownModule = "effect-taskiq"

const typeName = (e: unknown): string => {
  if (typeof e === "object" && e !== null) {
    const tag = (e as { _tag?: unknown })._tag
    if (typeof tag === "string") return tag
    // A subclass that does not set `name` still deserves its class name.
    if (e instanceof Error) return e.name === "Error" && e.constructor.name !== "Error" ? e.constructor.name : e.name
    return (e as object).constructor?.name ?? "Object"
  }
  return typeof e
}

const messageOf = (e: unknown): string => {
  if (e instanceof Error) return e.message
  if (typeof e === "string") return e
  try {
    return JSON.stringify(e) ?? String(e)
  } catch {
    return String(e)
  }
}

const moduleOf = (e: unknown): string =>
  e instanceof TaskTimeout || e instanceof Task.InvalidTask ? ownModule : "js"

/** The wire form of a failed run: the error, its typed encoding (when a failure Schema has one) and the pretty cause. */
export const errorFromCause = (cause: Cause.Cause<unknown>, encodeFailure?: Task.Any["encodeFailure"]): TaskResult.TaskError => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value
    let value: unknown = undefined
    if (encodeFailure !== undefined) {
      const encoded = encodeFailure(e)
      if (Either.isRight(encoded)) value = encoded.right
    }
    return { excType: typeName(e), excMessage: [messageOf(e)], excModule: moduleOf(e), pretty: Cause.pretty(cause), value }
  }
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) {
    return {
      excType: typeName(defect.value),
      excMessage: [messageOf(defect.value)],
      excModule: "js",
      pretty: Cause.pretty(cause)
    }
  }
  return { excType: "TaskInterrupted", excMessage: ["the task was interrupted"], excModule: ownModule, pretty: Cause.pretty(cause) }
}

const isPromiseLike = (u: unknown): u is PromiseLike<unknown> =>
  typeof u === "object" && u !== null && typeof (u as PromiseLike<unknown>).then === "function"

// Calls a handler now; what it returns as an Effect: an Effect, a Promise (its rejection becomes the failure), or a
// value. A throw is a defect, as in Effect.suspend.
const callHandler = (handler: (...args: ReadonlyArray<unknown>) => unknown, args: ReadonlyArray<unknown>): Effect.Effect<unknown, unknown> => {
  let out: unknown
  try {
    out = handler(...args)
  } catch (defect) {
    return Effect.die(defect)
  }
  if (Effect.isEffect(out)) return out as Effect.Effect<unknown, unknown>
  if (isPromiseLike(out)) return Effect.tryPromise({ try: () => out as Promise<unknown>, catch: (e) => e })
  return Effect.succeed(out)
}

/** Runs a handler whatever it returns: an Effect, a Promise (its rejection becomes the failure), or a value. */
export const runHandler = (handler: (...args: ReadonlyArray<unknown>) => unknown, args: ReadonlyArray<unknown>) =>
  Effect.suspend(() => callHandler(handler, args))

const seconds = (start: number) => (performance.now() - start) / 1000

const failed = (error: TaskResult.TaskError, start: number, labels: TaskMessage["labels"], poison?: string): Execution => ({
  result: TaskResult.fail(error, seconds(start), labels),
  poison
})

// A run's outcome as an Execution; a function made once (tsx's keepNames costs every closure made per task).
const toExecution = (task: Task.Any, message: TaskMessage, start: number, exit: Exit.Exit<unknown, unknown>): Execution => {
  if (exit._tag === "Failure") {
    const cause = exit.cause
    // A task that cannot run as asked (kc.exec naming a forbidden module…) will never succeed: poison.
    const failure = Cause.failureOption(cause)
    const poison = Option.isSome(failure) && failure.value instanceof Task.InvalidTask ? failure.value.message : undefined
    const execution = failed(errorFromCause(cause, task.encodeFailure), start, message.labels, poison)
    if (Cause.isInterruptedOnly(cause)) return { ...execution, interrupted: true }
    const retry = poison === undefined ? retryFor(task, cause, message.labels) : undefined
    return retry === undefined ? execution : { ...execution, retry }
  }
  if (task.encodeSuccess === undefined) {
    return { result: TaskResult.succeed(exit.value, seconds(start), message.labels), poison: undefined }
  }
  const encoded = task.encodeSuccess(exit.value)
  return Either.isRight(encoded)
    ? { result: TaskResult.succeed(encoded.right, seconds(start), message.labels), poison: undefined }
    : failed(
      { excType: "ResultEncodeError", excMessage: [ParseResult.TreeFormatter.formatErrorSync(encoded.left)], excModule: ownModule },
      start,
      message.labels
    )
}

/** An executor for these declared tasks; the handlers' services are taken from the context it is built in. */
export const make = <const Tasks extends ReadonlyArray<Task.Any>>(
  tasks: Tasks
): Effect.Effect<Context.Tag.Service<Executor>, never, TasksContext<Tasks[number]>> =>
  Effect.map(Effect.context<TasksContext<Tasks[number]>>(), (context) => {
    // Providing a context costs a fiber-ref update per task; skip it when the handlers need no services.
    const provide = context.unsafeMap.size === 0
      ? <A, E>(e: Effect.Effect<A, E, any>) => e as Effect.Effect<A, E>
      : <A, E>(e: Effect.Effect<A, E, any>) => Effect.provide(e, context) as Effect.Effect<A, E>
    const byName = new Map<string, Task.Any>()
    for (const task of tasks) byName.set(task.name, task)

    const executeWith = (
      message: TaskMessage,
      deliveryCount: number,
      withContext: <A, E>(e: Effect.Effect<A, E, any>) => Effect.Effect<A, E>
    ): Effect.Effect<Execution> =>
      Effect.suspend(() => {
        const start = performance.now()
        const task = byName.get(message.taskName)
        if (task === undefined) {
          const e = new Task.InvalidTask({
            reason: "UnknownTask",
            taskName: message.taskName,
            detail: `no task named "${message.taskName}" is registered with this worker (it knows ${
              [...byName.keys()].join(", ") || "no tasks"
            })`
          })
          return Effect.succeed(failed(errorFromCause(Cause.fail(e)), start, message.labels, e.message))
        }
        let args: ReadonlyArray<unknown> = Object.keys(message.kwargs).length === 0
          ? message.args
          : [...message.args, message.kwargs]
        if (task.decodeArgs !== undefined) {
          const decoded = task.decodeArgs(args)
          if (Either.isLeft(decoded)) {
            const e = new Task.InvalidTask({
              reason: "InvalidArguments",
              taskName: task.name,
              detail: ParseResult.TreeFormatter.formatErrorSync(decoded.left)
            })
            return Effect.succeed(failed(errorFromCause(Cause.fail(e)), start, message.labels, e.message))
          }
          args = decoded.right
        }
        const timeout = timeoutOf(message.labels) ?? task.timeout
        const run = timeout === undefined ? undefined : Effect.timeoutFail(runHandler(task.handler, args), {
          duration: timeout,
          onTimeout: () => new TaskTimeout({ taskName: task.name, timeoutMs: Duration.toMillis(timeout) })
        })
        const info: CurrentTask.TaskInfo = {
          taskId: message.taskId,
          taskName: task.name,
          attempt: retriesOf(message.labels) + 1,
          deliveryCount,
          labels: message.labels
        }
        // The task is recorded and its handler called in one step (no separate effects per task for either).
        return Effect.map(
          Effect.exit(Effect.withFiberRuntime<unknown, unknown>((fiber) => {
            const recorded = CurrentTask.set(fiber, info)
            const body = withContext(run ?? callHandler(task.handler, args))
            return recorded === Effect.void ? body : Effect.zipRight(recorded, body)
          })),
          (exit) => toExecution(task, message, start, exit)
        )
      })

    const provided = <A, E>(e: Effect.Effect<A, E, any>) => e as Effect.Effect<A, E>
    const execute = (message: TaskMessage, deliveryCount = 1) => executeWith(message, deliveryCount, provide)
    const executeProvided = (message: TaskMessage, deliveryCount = 1) => executeWith(message, deliveryCount, provided)
    return Executor.of({
      execute,
      taskNames: [...byName.keys()],
      withServices: (use) => provide(use(executeProvided))
    })
  })

/**
 * An executor for the declared tasks of the registry's modules, these extra tasks, and the generic
 * task `kc.exec` over the registry's allowlist.
 */
export const layerRegistry = <const Tasks extends ReadonlyArray<Task.Any> = readonly []>(
  tasks?: Tasks
): Layer.Layer<Executor, never, TaskRegistry.TaskRegistry | TasksContext<Tasks[number]>> =>
  Layer.effect(
    Executor,
    Effect.flatMap(TaskRegistry.TaskRegistry, (registry) =>
      make([...registry.tasks, ...(tasks ?? []), TaskRegistry.execTask(registry)]) as Effect.Effect<
        Context.Tag.Service<Executor>,
        never,
        TasksContext<Tasks[number]>
      >)
  )

/** An executor layer for these declared tasks. */
export const layer = <const Tasks extends ReadonlyArray<Task.Any>>(
  tasks: Tasks
): Layer.Layer<Executor, never, TasksContext<Tasks[number]>> => Layer.effect(Executor, make(tasks))
