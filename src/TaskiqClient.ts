/**
 * `TaskiqClient`: the producer API for code that is not written in Effect. A `ManagedRuntime` over the
 * default layer (Broker, ResultBackend, TaskRegistry) behind plain Promise methods; failures are the
 * library's own Error subclasses (`BrokerError`, `InvalidTask`, `ResultTimeout`, `TaskFailed`, …).
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Schema from "effect/Schema"
import { Broker } from "./Broker.js"
import type { LayerOptions, Services } from "./Main.js"
import { type AsyncFunction, scheduleMany, scheduleWith } from "./Producer.js"
import { ResultBackend } from "./ResultBackend.js"
import * as SyncPublisher from "./SyncPublisher.js"
import type * as Task from "./Task.js"
import * as TaskHandle from "./TaskHandle.js"
import type * as TaskProgress from "./TaskProgress.js"
import { TaskRegistry } from "./TaskRegistry.js"
import type * as TaskResult from "./TaskResult.js"
import * as settings from "./internal/settings.js"

/** The client was used before `startup()` finished, or after `shutdown()`. */
export class ClientNotStarted extends Schema.TaggedError<ClientNotStarted>()("ClientNotStarted", {
  reason: Schema.Literal("NotStarted", "Starting", "ShutDown"),
  detail: Schema.String
}) {
  override get message(): string {
    return `TaskiqClient is not running (${this.reason}): ${this.detail}`
  }
}

/** A submitted task, seen from Promise-land. */
export interface ClientTaskHandle<A = unknown> {
  readonly taskId: string
  readonly taskName: string
  readonly queueName: string
  /**
   * Waits for the result (default 60 s; `Infinity` waits for ever) and resolves to it, success or failure
   * alike: `{ isErr, returnValue, error, executionTime, labels, log }`. Rejects only when no result can be
   * had: `ResultTimeout` (names the task id and queue), `BackendError`, `ResultDecodeError`.
   */
  readonly waitResult: (timeoutSeconds?: number) => Promise<TaskResult.TaskResult<A | null>>
  /**
   * Waits for the value; rejects with the task's own typed error (if it declared a failure Schema), else
   * `TaskFailed` (or `TaskCancelled`).
   */
  readonly result: (timeoutSeconds?: number) => Promise<A>
  /** Cancels the task (queued: never starts; running: interrupted); `false` if it had already finished. */
  readonly cancel: (reason?: string) => Promise<boolean>
  /** The task's progress as its handler reports it, pushed: `for await (const p of handle.progress())`; ends with the task. */
  readonly progress: () => AsyncIterable<TaskProgress.TaskProgress>
  /** The task's last reported progress, or `null`. */
  readonly getProgress: () => Promise<TaskProgress.TaskProgress | null>
  /** `true` when the submission was deduplicated: this is the task that already held the idempotency key. */
  readonly deduplicated: boolean
}

/** Options of `new TaskiqClient(options)`. */
export declare namespace TaskiqClient {
  /**
   * Where tasks go: `layer` (e.g. `Taskiq.layerMemory()`), or an `app`'s layer, or Redis configured by
   * `url`, `queueName`, `resultExTime` / `resultPxTime`, `resultPrefix`, `connectTimeout` (seconds),
   * `maxMessageBytes` and, for what these leave out, the environment and `.env` (`dotEnv`).
   * Which modules `kc.exec` functions are found in: `modules`, `fsDiscover`, `tasksPattern`, `appDir`
   * (or the app's). With a `layer` or an `app`, `url` and `queueName` only tell `scheduleAsyncSync` where to publish.
   */
  export interface Options extends LayerOptions {
    /** Seconds `scheduleAsyncSync` may block (default 10), thread start and connecting included. */
    readonly syncTimeout?: number | undefined
  }
}

interface Running {
  readonly runtime: ManagedRuntime.ManagedRuntime<Services, unknown>
  readonly registry: Context.Tag.Service<TaskRegistry>
  readonly queueName: string
  readonly sync: SyncPublisher.SyncPublisher | string // a publisher, or why there can be none
}

type State =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Starting"; readonly promise: Promise<void>; readonly starting: Promise<Running> }
  | { readonly _tag: "Running"; readonly running: Running }
  | { readonly _tag: "ShuttingDown"; readonly promise: Promise<void> }
  | { readonly _tag: "ShutDown" }

const toDuration = (seconds: number | undefined): Duration.Duration => {
  if (seconds === undefined) return TaskHandle.defaultTimeout
  if (seconds === Infinity) return Duration.infinity
  if (!(Number.isFinite(seconds) && seconds >= 0)) {
    throw new RangeError(`a timeout is a number of seconds (or Infinity), got ${seconds}`)
  }
  return Duration.millis(Math.round(seconds * 1000))
}

/**
 * A task client with Promise methods. `await startup()` first (connects, loads the task modules; rejects
 * with `BrokerError` if Redis is unreachable), `await shutdown()` at the end (closes every connection).
 * `startup()` is idempotent: a second call (also a concurrent one) resolves when the first does. A client
 * that was shut down stays shut down: make a new one.
 */
export class TaskiqClient {
  private state: State = { _tag: "Idle" }
  private readonly fibers = new Set<Fiber.RuntimeFiber<unknown, unknown>>()

  constructor(readonly options: TaskiqClient.Options = {}) {}

  /** Connects and loads the task registry; resolves once the client is usable. */
  startup(): Promise<void> {
    switch (this.state._tag) {
      case "Running":
        return Promise.resolve()
      case "Starting":
        return this.state.promise
      case "ShuttingDown":
      case "ShutDown":
        return Promise.reject(this.notRunning())
      case "Idle": {
        const starting = this.start()
        const promise = starting.then(
          (running) => {
            if (this.state._tag === "Starting") this.state = { _tag: "Running", running }
          },
          (error) => {
            if (this.state._tag === "Starting") this.state = { _tag: "Idle" } // a failed startup may be retried
            throw error
          }
        )
        this.state = { _tag: "Starting", promise, starting }
        return promise
      }
    }
  }

  /** Interrupts calls in flight (they reject with `ClientNotStarted`), then closes every connection. Idempotent. */
  shutdown(): Promise<void> {
    switch (this.state._tag) {
      case "ShutDown":
        return Promise.resolve()
      case "ShuttingDown":
        return this.state.promise
      case "Idle":
        this.state = { _tag: "ShutDown" }
        return Promise.resolve()
      case "Starting": {
        // Let the startup finish, then release what it built.
        const promise = this.state.starting.then((running) => this.stop(running), () => {
          this.state = { _tag: "ShutDown" }
        })
        this.state = { _tag: "ShuttingDown", promise }
        return promise
      }
      case "Running": {
        const promise = this.stop(this.state.running)
        this.state = { _tag: "ShuttingDown", promise }
        return promise
      }
    }
  }

  /** Whether `startup()` has finished and `shutdown()` has not begun. */
  get isRunning(): boolean {
    return this.state._tag === "Running"
  }

  /** The queue tasks are published to. */
  get queueName(): string {
    return this.running().queueName
  }

  /** Submits a declared task, or an exported async function (via `kc.exec`), and resolves to its handle. */
  scheduleAsync<Args extends ReadonlyArray<any>, A, E, R>(task: Task.Task<Args, A, E, R>, ...args: Args): Promise<ClientTaskHandle<A>>
  scheduleAsync<F extends AsyncFunction>(fn: F, ...args: Parameters<F>): Promise<ClientTaskHandle<Awaited<ReturnType<F>>>>
  scheduleAsync(taskOrFn: unknown, ...args: Array<unknown>): Promise<ClientTaskHandle<unknown>> {
    return this.scheduleWith(taskOrFn as AsyncFunction, {}, ...args)
  }

  /** `scheduleAsync` with per-submission labels or keyword arguments. */
  scheduleWith<Args extends ReadonlyArray<any>, A, E, R>(
    task: Task.Task<Args, A, E, R>,
    options: Task.SubmitOptions,
    ...args: Args
  ): Promise<ClientTaskHandle<A>>
  scheduleWith<F extends AsyncFunction>(
    fn: F,
    options: Task.SubmitOptions,
    ...args: Parameters<F>
  ): Promise<ClientTaskHandle<Awaited<ReturnType<F>>>>
  scheduleWith(taskOrFn: unknown, options: Task.SubmitOptions, ...args: Array<unknown>): Promise<ClientTaskHandle<unknown>> {
    const submit = scheduleWith as (
      t: unknown,
      o: Task.SubmitOptions,
      ...a: Array<unknown>
    ) => Effect.Effect<TaskHandle.TaskHandle<unknown, unknown>, Task.ScheduleError, Services>
    return this.run(submit(taskOrFn, options, ...args)).then((handle) => this.wrap(handle))
  }

  /**
   * Submits many runs of a declared task or an exported async function in one round trip (as BullMQ's
   * `addBulk`); resolves to their handles, in order. Every argument list is checked before anything is published.
   */
  scheduleMany<Args extends ReadonlyArray<any>, A, E, R>(
    task: Task.Task<Args, A, E, R>,
    argsList: Iterable<NoInfer<Args>>,
    options?: Task.SubmitOptions
  ): Promise<Array<ClientTaskHandle<A>>>
  scheduleMany<F extends AsyncFunction>(
    fn: F,
    argsList: Iterable<Parameters<F>>,
    options?: Task.SubmitOptions
  ): Promise<Array<ClientTaskHandle<Awaited<ReturnType<F>>>>>
  scheduleMany(
    taskOrFn: unknown,
    argsList: Iterable<ReadonlyArray<unknown>>,
    options: Task.SubmitOptions = {}
  ): Promise<Array<ClientTaskHandle<unknown>>> {
    const submit = scheduleMany as (
      t: unknown,
      l: Iterable<ReadonlyArray<unknown>>,
      o: Task.SubmitOptions
    ) => Effect.Effect<Array<TaskHandle.TaskHandle<unknown, unknown>>, Task.ScheduleError, Services>
    return this.run(submit(taskOrFn, argsList, options)).then((handles) => handles.map((h) => this.wrap(h)))
  }

  /**
   * Submits and returns the task id synchronously, blocking this thread until Redis has the message
   * (see `SyncPublisher`). Finds exported async functions in this client's registry. Throws
   * `ClientNotStarted`, `InvalidTask`, `BrokerError` or `SyncPublishError` (`Timeout`, or `Unsupported`
   * for a client given a `layer`/`app` but no `url`).
   */
  scheduleAsyncSync<Args extends ReadonlyArray<any>, A, E, R>(task: Task.Task<Args, A, E, R>, ...args: Args): string
  scheduleAsyncSync<F extends AsyncFunction>(fn: F, ...args: Parameters<F>): string
  scheduleAsyncSync(taskOrFn: unknown, ...args: Array<unknown>): string {
    const running = this.running()
    const message = SyncPublisher.encode(taskOrFn, {}, args, running.registry)
    if (typeof running.sync === "string") {
      throw new SyncPublisher.SyncPublishError({
        reason: "Unsupported",
        detail: running.sync,
        taskId: message.taskId,
        taskName: message.taskName
      })
    }
    return running.sync.publish(message)
  }

  /** A handle for a task id (also one submitted elsewhere), to wait for its result. */
  handle<A = unknown>(taskId: string, taskName = "<unknown>"): ClientTaskHandle<A> {
    return this.wrap(TaskHandle.make<A>(taskId, taskName, this.running().queueName))
  }

  /** The stored result of a task, or `null` if there is none (yet); does not wait. */
  getResult(taskId: string): Promise<TaskResult.TaskResult | null> {
    return this.run(Effect.flatMap(ResultBackend, (backend) => backend.get(taskId))).then(Option.getOrNull)
  }

  // ---------------------------------------------------------------------------------------------------

  private async start(): Promise<Running> {
    const options = this.options
    let redis: settings.RedisSettings | undefined
    if (!settings.hasCustomLayer(options)) {
      const resolved = settings.resolveSync(options)
      if (Either.isLeft(resolved)) throw resolved.left
      redis = resolved.right
    }
    const infra = redis === undefined ? settings.makeLayer(options) : settings.makeLayer({ ...options, layer: settings.redisLayer(redis) })
    const runtime = ManagedRuntime.make(infra)
    const exit = await Effect.runPromiseExit(runtime.runtimeEffect)
    if (Exit.isFailure(exit)) {
      await runtime.dispose()
      throw Cause.squash(exit.cause)
    }
    const context = exit.value.context
    const queueName = Context.get(context, Broker).queueName
    return {
      runtime,
      registry: Context.get(context, TaskRegistry),
      queueName,
      sync: this.syncPublisher(redis, queueName)
    }
  }

  private syncPublisher(redis: settings.RedisSettings | undefined, queueName: string): SyncPublisher.SyncPublisher | string {
    const options = this.options
    let target: settings.RedisSettings | undefined = redis
    if (target === undefined) {
      if (options.url === undefined) {
        return "this client was given a layer or an app, so its Redis URL is unknown to the publishing thread: " +
          "pass url (and queueName if it differs from the broker's) in the TaskiqClient options too"
      }
      const resolved = settings.resolveSync({ ...options, queueName: options.queueName ?? queueName }, false)
      if (Either.isLeft(resolved)) return resolved.left.message
      target = resolved.right
    }
    const seconds = options.syncTimeout
    if (seconds !== undefined && !(seconds > 0)) {
      return `syncTimeout must be a positive number of seconds, got ${seconds}`
    }
    return new SyncPublisher.SyncPublisher({
      url: target.url,
      queueName: target.queueName,
      connectTimeoutMs: target.connectTimeoutMs,
      maxMessageBytes: target.maxMessageBytes,
      timeoutMs: seconds === undefined ? SyncPublisher.defaultTimeoutMs : Math.round(seconds * 1000),
      signingKeys: target.signingKeys
    })
  }

  private async stop(running: Running): Promise<void> {
    try {
      await Promise.all([...this.fibers].map((fiber) => Effect.runPromise(Fiber.interrupt(fiber))))
      await Promise.all([
        running.runtime.dispose(),
        typeof running.sync === "string" ? Promise.resolve() : running.sync.close()
      ])
    } finally {
      this.state = { _tag: "ShutDown" }
    }
  }

  private notRunning(): ClientNotStarted {
    switch (this.state._tag) {
      case "Idle":
        return new ClientNotStarted({ reason: "NotStarted", detail: "call `await client.startup()` first" })
      case "Starting":
        return new ClientNotStarted({ reason: "Starting", detail: "`startup()` has not finished: await it first" })
      default:
        return new ClientNotStarted({
          reason: "ShutDown",
          detail: "the client was shut down; a shut-down client cannot be restarted: create a new TaskiqClient"
        })
    }
  }

  private running(): Running {
    if (this.state._tag !== "Running") throw this.notRunning()
    return this.state.running
  }

  /** Runs an effect in the client's runtime; rejects with the failure itself (not a wrapper). */
  private run<A, E>(effect: Effect.Effect<A, E, Services>): Promise<A> {
    let running: Running
    try {
      running = this.running()
    } catch (error) {
      return Promise.reject(error)
    }
    const fiber = running.runtime.runFork(effect)
    this.fibers.add(fiber)
    return new Promise<A>((resolve, reject) => {
      fiber.addObserver((exit) => {
        this.fibers.delete(fiber)
        if (Exit.isSuccess(exit)) resolve(exit.value)
        else if (Cause.isInterruptedOnly(exit.cause)) {
          reject(new ClientNotStarted({ reason: "ShutDown", detail: "the client was shut down while this call was running" }))
        } else reject(Cause.squash(exit.cause))
      })
    })
  }

  private wrap<A>(handle: TaskHandle.TaskHandle<A, unknown>): ClientTaskHandle<A> {
    const timeout = (seconds: number | undefined) => Effect.sync(() => toDuration(seconds))
    return {
      taskId: handle.taskId,
      taskName: handle.taskName,
      queueName: handle.queueName,
      waitResult: (seconds) => this.run(Effect.flatMap(timeout(seconds), (t) => handle.waitResult({ timeout: t }))),
      result: (seconds) => this.run(Effect.flatMap(timeout(seconds), (t) => handle.result({ timeout: t }))),
      cancel: (reason) => this.run(handle.cancel(reason)),
      progress: () => {
        const iterable = this.run(Stream.toAsyncIterableEffect(handle.progress))
        return (async function*() {
          yield* await iterable
        })()
      },
      getProgress: () => this.run(handle.getProgress).then(Option.getOrNull),
      deduplicated: handle.deduplicated
    }
  }
}
