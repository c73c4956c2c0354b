/**
 * Declared tasks: a fixed name, a handler returning an Effect or a Promise, and optional Schemas for
 * the arguments, the success and the typed failure, so both ends validate.
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import {
  Broker,
  type BrokerError,
  defaultIdempotencyTtlMs,
  idempotencyLabel,
  type Priority,
  priorityLabel
} from "./Broker.js"
import * as Inbox from "./internal/inbox.js"
import * as TaskHandle from "./TaskHandle.js"
import * as TaskMessage from "./TaskMessage.js"
import * as TaskTracing from "./TaskTracing.js"
import type { Labels } from "./TaskMessage.js"

/** A task cannot be submitted or run as asked; `reason` says which rule it broke and `detail` what to do. */
export class InvalidTask extends Schema.TaggedError<InvalidTask>()("InvalidTask", {
  reason: Schema.Literal(
    "NotATask",
    "NotExported",
    "NotAsync",
    "UnknownModule",
    "UnknownTask",
    "ForbiddenModule",
    "InvalidArguments",
    "InvalidOptions",
    "NotSerializable"
  ),
  taskName: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `Invalid task ${this.taskName} (${this.reason}): ${this.detail}`
  }
}

/** What submitting a task can fail with. */
export type ScheduleError = InvalidTask | BrokerError

/** The success type of a handler's return value. */
export type SuccessOf<Out> = Out extends Effect.Effect<infer A, infer _E, infer _R> ? A
  : Out extends PromiseLike<infer A> ? A
  : Out
/** The typed failure of a handler's return value (Promises fail untyped). */
export type ErrorOf<Out> = Out extends Effect.Effect<infer _A, infer E, infer _R> ? E : never
/** The services a handler's Effect needs; the worker must provide them. */
export type ContextOf<Out> = Out extends Effect.Effect<infer _A, infer _E, infer R> ? R : never

/** Options of a declared task. */
export interface TaskOptions<Args extends ReadonlyArray<unknown>, A, E> {
  /** A tuple Schema for the arguments: encoded by the producer, decoded (validated) by the worker. */
  readonly args?: Schema.Schema<Args, any> | Schema.Schema<Readonly<Args>, any> | undefined
  /** A Schema for the return value: encoded by the worker, decoded by `waitResult`. */
  readonly success?: Schema.Schema<A, any> | undefined
  /** A Schema for the typed failure, so the caller gets the same tagged error back. */
  readonly failure?: Schema.Schema<E, any> | undefined
  /** The handler is interrupted after this long and the result is a `TaskTimeout` error. */
  readonly timeout?: Duration.DurationInput | undefined
  /** Labels sent with every submission. */
  readonly labels?: Labels | undefined
  /** Retry failed runs: later, through the delayed queue, so a waiting retry holds no worker slot. */
  readonly retry?: RetryPolicy | undefined
  /** The priority of every submission (default `normal`). */
  readonly priority?: Priority | undefined
}

/** How a failed task is retried. The attempt count travels in the `_retries` label, so any worker continues it. */
export interface RetryPolicy {
  /** Attempts in all, the first included (default 3). */
  readonly maxAttempts?: number | undefined
  /** The waits between attempts, as an Effect Schedule's delays (default: 1 s doubling, jittered, at most 1 min). */
  readonly schedule?: Schedule.Schedule<unknown, unknown> | undefined
  /** Which failures (or defects) to retry; default all but `InvalidTask` and errors marked `nonRetryable`. */
  readonly while?: ((error: unknown) => boolean) | undefined
}

const nonRetryableMark: unique symbol = Symbol.for("effect-taskiq/NonRetryable")

/** Marks an error so that no retry policy retries it (the error itself, and its type, are unchanged). */
export const nonRetryable = <E extends object>(error: E): E => {
  Object.defineProperty(error, nonRetryableMark, { value: true, enumerable: false })
  return error
}

/** Whether an error was marked with `nonRetryable`. */
export const isNonRetryable = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as Record<symbol, unknown>)[nonRetryableMark] === true

/** Per submission: `false` turns the task's retries off, `true` turns them on (taskiq's SimpleRetryMiddleware label). */
export const retryOnErrorLabel = "retry_on_error"

/** Per submission: the most retries after the first attempt (taskiq's SimpleRetryMiddleware label). */
export const maxRetriesLabel = "max_retries"

/** The label that counts retries done so far (taskiq's retry middlewares use the same name). */
export const retriesLabel = "_retries"

const defaultRetrySchedule: Schedule.Schedule<unknown, unknown> = Schedule.exponential("1 second").pipe(
  Schedule.jittered,
  Schedule.union(Schedule.spaced("1 minute"))
)

/** The wait before retry number `retry` (1 for the first), or `undefined` when the policy gives up. */
export const retryDelay = (policy: RetryPolicy, retry: number): Duration.Duration | undefined => {
  if (retry >= (policy.maxAttempts ?? 3)) return undefined
  const delays = Effect.runSync(
    Schedule.run(Schedule.delays(policy.schedule ?? defaultRetrySchedule), Date.now(), Array.from({ length: retry }, () => undefined))
  )
  return Chunk.get(delays, retry - 1).pipe(Option.getOrUndefined)
}

/** A compiled codec: a function from one side of a Schema to the other (bivariant, so any task fits `Any`). */
type Codec<I, O> = { bivariant(input: I): Either.Either<O, ParseResult.ParseError> }["bivariant"] | undefined

const TypeId: unique symbol = Symbol.for("effect-taskiq/Task")

/** A declared task. */
export interface Task<Args extends ReadonlyArray<any>, A, E = never, R = never> {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  readonly handler: (...args: Args) => unknown
  readonly timeout: Duration.Duration | undefined
  readonly labels: Labels
  readonly retry: RetryPolicy | undefined
  readonly priority: Priority | undefined
  readonly encodeArgs: Codec<Args, ReadonlyArray<unknown>>
  readonly decodeArgs: Codec<unknown, Args>
  readonly encodeSuccess: Codec<A, unknown>
  readonly decodeSuccess: Codec<unknown, A>
  readonly encodeFailure: Codec<E, unknown>
  readonly decodeFailure: Codec<unknown, E>
  /** Submits the task with these arguments. */
  readonly kiq: (...args: Args) => Effect.Effect<TaskHandle.TaskHandle<A, E>, ScheduleError, Broker>
  /** Submits many runs at once (one round trip); their handles, in order. */
  readonly kiqMany: (
    argsList: Iterable<Args>,
    options?: SubmitOptions
  ) => Effect.Effect<Array<TaskHandle.TaskHandle<A, E>>, ScheduleError, Broker>
  /** Phantom: the services the handler needs. */
  readonly _R?: (_: never) => R
}

/** Any declared task. */
export type Any = Task<any, any, any, any>

/** Whether a value is a declared task. */
export const isTask = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

const compile = <S extends Schema.Schema<any, any>>(schema: S | undefined, direction: "encode" | "decode") =>
  schema === undefined
    ? undefined
    : direction === "encode"
    ? Schema.encodeEither(schema as Schema.Schema<any, any>, { errors: "all" })
    : Schema.decodeUnknownEither(schema as Schema.Schema<any, any>, { errors: "all" })

/** Declares a task named `name` (the routing key on the wire) run by `handler`. */
export const make = <H extends (...args: any) => any>(
  name: string,
  handler: H,
  options: TaskOptions<Parameters<H>, SuccessOf<ReturnType<H>>, ErrorOf<ReturnType<H>>> = {}
): Task<Parameters<H>, SuccessOf<ReturnType<H>>, ErrorOf<ReturnType<H>>, ContextOf<ReturnType<H>>> => {
  const task: Task<Parameters<H>, SuccessOf<ReturnType<H>>, ErrorOf<ReturnType<H>>, ContextOf<ReturnType<H>>> = {
    [TypeId]: TypeId,
    name,
    handler,
    timeout: options.timeout === undefined ? undefined : Duration.decode(options.timeout),
    labels: options.labels ?? {},
    retry: options.retry,
    priority: options.priority,
    encodeArgs: compile(options.args, "encode"),
    decodeArgs: compile(options.args, "decode"),
    encodeSuccess: compile(options.success, "encode"),
    decodeSuccess: compile(options.success, "decode"),
    encodeFailure: compile(options.failure, "encode"),
    decodeFailure: compile(options.failure, "decode"),
    kiq: (...args) => submit(task, args, {}),
    kiqMany: (argsList, options) => submitMany(task, argsList, options)
  }
  return task
}

/** Per-submission settings. */
export interface SubmitOptions {
  /** Labels merged over the task's own. */
  readonly labels?: Labels | undefined
  /** Keyword arguments, for handlers written for taskiq's Python side (appended as a last argument here). */
  readonly kwargs?: Readonly<Record<string, unknown>> | undefined
  /** Run no sooner than this from now (measured by the broker's clock). */
  readonly delay?: Duration.DurationInput | undefined
  /** Run no sooner than this time (ignored when `delay` is given). */
  readonly at?: Date | undefined
  /** Overrides the task's timeout for this submission (sent as taskiq's `timeout` label, in seconds). */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Overrides the task's retries for this submission: `false` for none, or `{ maxAttempts }` (the task's schedule,
   * or the default one if it has no policy). Sent as taskiq's `retry_on_error` / `max_retries` labels.
   */
  readonly retry?: false | { readonly maxAttempts: number } | undefined
  /** Overrides the task's priority for this submission (sent as the `priority` label). */
  readonly priority?: Priority | undefined
  /**
   * Deduplicates: while another submission with this key is queued or running, this one publishes nothing
   * and returns that task's handle (`handle.deduplicated`). The key is let go when its task finishes.
   */
  readonly idempotencyKey?: string | undefined
  /** Holds the idempotency key this long from submission instead, finished or not (debouncing). */
  readonly idempotencyTtl?: Duration.DurationInput | undefined
}

const delayMsOf = (options: SubmitOptions): number | undefined =>
  options.delay !== undefined
    ? Duration.toMillis(Duration.decode(options.delay))
    : options.at !== undefined
    ? options.at.getTime() - Date.now()
    : undefined

// One submission, encoded: its id, wire JSON and what it asks of the broker; or why it cannot be submitted.
interface Encoded {
  readonly taskId: string
  readonly json: string
  readonly replyTo: string | undefined
  readonly idempotencyTtlMs: number | undefined
}

const encodeSubmission = <Args extends ReadonlyArray<any>, A, E, R>(
  task: Task<Args, A, E, R>,
  args: Args,
  options: SubmitOptions,
  priority: Priority | undefined
): Either.Either<Encoded, InvalidTask> => {
  let wireArgs: ReadonlyArray<unknown> = args
  if (task.encodeArgs !== undefined) {
    const encoded = task.encodeArgs(args)
    if (Either.isLeft(encoded)) {
      return Either.left(
        new InvalidTask({
          reason: "InvalidArguments",
          taskName: task.name,
          detail: ParseResult.TreeFormatter.formatErrorSync(encoded.left)
        })
      )
    }
    wireArgs = encoded.right
  }
  const taskId = TaskMessage.makeTaskId()
  const idempotencyTtlMs = options.idempotencyTtl === undefined
    ? undefined
    : Duration.toMillis(Duration.decode(options.idempotencyTtl))
  if (options.idempotencyKey !== undefined && (options.idempotencyKey === "" || (idempotencyTtlMs !== undefined && !(idempotencyTtlMs >= 1)))) {
    return Either.left(
      new InvalidTask({
        reason: "InvalidOptions",
        taskName: task.name,
        detail: options.idempotencyKey === ""
          ? "idempotencyKey must not be empty"
          : `idempotencyTtl must be at least 1 ms, got ${idempotencyTtlMs} ms`
      })
    )
  }
  // Extra labels only when asked for: a plain submission's message is what it always was.
  let labels: TaskMessage.Labels = options.labels === undefined ? task.labels : { ...task.labels, ...options.labels }
  const replyTo = Inbox.isOpen() ? Inbox.channel : undefined
  if (
    options.retry !== undefined && options.retry !== false &&
    !(Number.isInteger(options.retry.maxAttempts) && options.retry.maxAttempts >= 1)
  ) {
    return Either.left(
      new InvalidTask({
        reason: "InvalidOptions",
        taskName: task.name,
        detail: `retry.maxAttempts must be a whole number of attempts, at least 1, got ${options.retry.maxAttempts}`
      })
    )
  }
  if (
    options.timeout !== undefined || priority !== undefined || replyTo !== undefined || options.retry !== undefined ||
    (options.idempotencyKey !== undefined && idempotencyTtlMs === undefined)
  ) {
    const extra: Record<string, TaskMessage.LabelValue> = { ...labels }
    if (options.retry === false) extra[retryOnErrorLabel] = false
    else if (options.retry !== undefined) {
      extra[retryOnErrorLabel] = true
      extra[maxRetriesLabel] = options.retry.maxAttempts - 1
    }
    // This process has a result inbox open: the worker pushes the result there too (see internal/inbox.ts).
    if (replyTo !== undefined) extra[Inbox.label] = replyTo
    if (options.timeout !== undefined) extra.timeout = Duration.toMillis(Duration.decode(options.timeout)) / 1000
    if (priority !== undefined) extra[priorityLabel] = priority
    // Held until the task finishes: the worker that finishes it lets the key go.
    if (options.idempotencyKey !== undefined && idempotencyTtlMs === undefined) extra[idempotencyLabel] = options.idempotencyKey
    labels = extra
  }
  const message: TaskMessage.TaskMessage = { taskId, taskName: task.name, labels, args: wireArgs, kwargs: options.kwargs ?? {} }
  try {
    return Either.right({ taskId, json: TaskMessage.encodeJson(message), replyTo, idempotencyTtlMs })
  } catch (cause) {
    return Either.left(
      new InvalidTask({
        reason: "NotSerializable",
        taskName: task.name,
        detail: `arguments must be JSON-serializable or the task must declare an args Schema: ${(cause as Error).message}`
      })
    )
  }
}

/** Encodes the arguments, publishes the message and returns its handle. */
export const submit = <Args extends ReadonlyArray<any>, A, E, R>(
  task: Task<Args, A, E, R>,
  args: Args,
  options: SubmitOptions
): Effect.Effect<TaskHandle.TaskHandle<A, E>, ScheduleError, Broker> =>
  sending(task.name, options, (broker, opts) => send(broker, task, args, opts), (h) => [h])

// Runs a submission with the broker; with tracing on, in its span (`taskiq.send <task>`, kind producer), its messages
// carrying the span's context in their `traceparent` label.
const sending = <A>(
  taskName: string,
  options: SubmitOptions,
  submitWith: (broker: Context.Tag.Service<Broker>, options: SubmitOptions) => Effect.Effect<A, ScheduleError>,
  handlesOf: (a: A) => ReadonlyArray<TaskHandle.TaskHandle<unknown, unknown>>
): Effect.Effect<A, ScheduleError, Broker> =>
  Effect.contextWithEffect((ctx: Context.Context<Broker>) => {
    const broker = Context.get(ctx, Broker)
    if (!Context.get(ctx, TaskTracing.TaskTracing)) return submitWith(broker, options)
    return Effect.withSpan(
      Effect.flatMap(Effect.orDie(Effect.currentSpan), (span) =>
        Effect.tap(
          submitWith(broker, { ...options, labels: { ...options.labels, [TaskTracing.traceparentLabel]: TaskTracing.format(span) } }),
          (a) => {
            const handles = handlesOf(a)
            span.attribute("taskiq.tasks", handles.length)
            if (handles.length === 1) span.attribute("messaging.message.id", handles[0]!.taskId)
          }
        )),
      `taskiq.send ${taskName}`,
      {
        kind: "producer",
        attributes: { "messaging.system": "taskiq", "messaging.destination.name": broker.queueName, "taskiq.task_name": taskName }
      }
    )
  })

const send = <Args extends ReadonlyArray<any>, A, E, R>(
  broker: Context.Tag.Service<Broker>,
  task: Task<Args, A, E, R>,
  args: Args,
  options: SubmitOptions
): Effect.Effect<TaskHandle.TaskHandle<A, E>, ScheduleError> => {
  const priority = options.priority ?? task.priority
  const encoded = encodeSubmission(task, args, options, priority)
  if (Either.isLeft(encoded)) return Effect.fail(encoded.left)
  const { idempotencyTtlMs, json, replyTo, taskId } = encoded.right
  const delayMs = delayMsOf(options)
  const publishOptions = delayMs === undefined && priority === undefined && options.idempotencyKey === undefined
    ? undefined
    : {
      delayMs,
      priority,
      idempotency: options.idempotencyKey === undefined ? undefined : {
        key: options.idempotencyKey,
        taskId,
        ttlMs: idempotencyTtlMs ?? defaultIdempotencyTtlMs
      }
    }
  // Registered before the message goes out, so that its result is awaited without a catch-up read; a message not
  // published (failed, or deduplicated onto another task) has no result to await.
  if (replyTo !== undefined) Inbox.expect(taskId)
  return Effect.map(
    Effect.tapError(broker.publishRaw(json, publishOptions), () => Effect.sync(() => Inbox.forget(taskId))),
    (holder) => {
      if (holder === undefined) return TaskHandle.make(taskId, task.name, broker.queueName, task, false, replyTo)
      Inbox.forget(taskId)
      return TaskHandle.make(holder, task.name, broker.queueName, task, true)
    }
  )
}

/**
 * Submits many runs of a task at once — one round trip, like BullMQ's `addBulk` — and returns their
 * handles in order. Every submission is validated first: one bad set of arguments fails the call and publishes
 * nothing. Takes the options of a submission (`delay` / `at` hold them all until then) except `idempotencyKey`,
 * which names a single submission.
 */
export const submitMany = <Args extends ReadonlyArray<any>, A, E, R>(
  task: Task<Args, A, E, R>,
  argsList: Iterable<Args>,
  options: SubmitOptions = {}
): Effect.Effect<Array<TaskHandle.TaskHandle<A, E>>, ScheduleError, Broker> =>
  sending(task.name, options, (broker, opts) => sendMany(broker, task, argsList, opts), (hs) => hs)

const sendMany = <Args extends ReadonlyArray<any>, A, E, R>(
  broker: Context.Tag.Service<Broker>,
  task: Task<Args, A, E, R>,
  argsList: Iterable<Args>,
  options: SubmitOptions
): Effect.Effect<Array<TaskHandle.TaskHandle<A, E>>, ScheduleError> => {
  if (options.idempotencyKey !== undefined || options.idempotencyTtl !== undefined) {
    return Effect.fail(
      new InvalidTask({
        reason: "InvalidOptions",
        taskName: task.name,
        detail: "kiqMany takes no idempotencyKey: a key names one submission (submit such tasks one by one: kiq / scheduleWith)"
      })
    )
  }
  const delayMs = delayMsOf(options)
  const priority = options.priority ?? task.priority
  const jsons: Array<string> = []
  const handles: Array<TaskHandle.TaskHandle<A, E>> = []
  const expected: Array<string> = []
  for (const args of argsList) {
    const encoded = encodeSubmission(task, args, options, priority)
    if (Either.isLeft(encoded)) return Effect.fail(encoded.left)
    jsons.push(encoded.right.json)
    handles.push(TaskHandle.make(encoded.right.taskId, task.name, broker.queueName, task, false, encoded.right.replyTo))
    if (encoded.right.replyTo !== undefined) expected.push(encoded.right.taskId)
  }
  for (const taskId of expected) Inbox.expect(taskId)
  return Effect.as(
    Effect.tapError(broker.publishManyRaw(jsons, priority, delayMs), () => Effect.sync(() => expected.forEach(Inbox.forget))),
    handles
  )
}
