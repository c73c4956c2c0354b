/**
 * `scheduleAsyncSync(taskOrFn, ...args)`: submits a task and returns its id *synchronously*, for CommonJS
 * scripts, REPLs and sync callbacks. The message is built (and validated) on the calling thread; a
 * long-lived worker thread publishes it to Redis while the caller blocks in `Atomics.wait` until Redis
 * has it, or the timeout passes. The thread is `unref`ed (it never keeps the process alive) and is closed
 * when the process is about to exit, or by `close()`.
 *
 * Finding a plain function's module (`kc.exec`) needs a loaded task registry, which only an async startup
 * can build: the standalone `scheduleAsyncSync` submits declared tasks only (they need nothing but their
 * name), and a started `TaskiqClient`'s `tc.scheduleAsyncSync` also submits exported async functions.
 */
import { readFileSync } from "node:fs"
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { Broker, BrokerError, type PublishOptions } from "./Broker.js"
import * as RedisBroker from "./Broker/Redis.js"
import { type AsyncFunction, scheduleWith } from "./Producer.js"
import { redactUrl } from "./RedisConnection.js"
import * as Task from "./Task.js"
import { TaskRegistry } from "./TaskRegistry.js"
import * as settings from "./internal/settings.js"
import * as Signing from "./internal/signing.js"

/** A synchronous submission could not be confirmed. `Timeout`: the message may or may not have been published. */
export class SyncPublishError extends Schema.TaggedError<SyncPublishError>()("SyncPublishError", {
  reason: Schema.Literal("Timeout", "Unsupported", "ThreadFailed"),
  detail: Schema.String,
  taskId: Schema.optional(Schema.String),
  taskName: Schema.optional(Schema.String),
  queue: Schema.optional(Schema.String),
  url: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    const task = this.taskId === undefined ? "" : ` task ${this.taskName ?? ""} (${this.taskId})`.replace("  ", " ")
    const where = [this.url && `url ${this.url}`, this.queue && `queue ${this.queue}`].filter(Boolean).join(", ")
    return `Synchronous submission of${task || " a task"} failed (${this.reason}${where ? `; ${where}` : ""}): ${this.detail}`
  }
}

/** Where and how long: what a publishing thread is given. */
export interface SyncTarget {
  readonly url: Redacted.Redacted<string>
  readonly queueName: string
  readonly connectTimeoutMs: number
  readonly maxMessageBytes: number
  /** How long a call may block, thread start and connecting included (milliseconds). */
  readonly timeoutMs: number
  /** Message signing keys (the first signs), as the broker's `signingKeys`. */
  readonly signingKeys?: ReadonlyArray<string | Redacted.Redacted<string>> | undefined
}

/** Options of the standalone `scheduleAsyncSync` (see `configure`); unset ones come from the environment and `.env`. */
export interface SyncOptions {
  readonly url?: string | undefined
  readonly queueName?: string | undefined
  /** Seconds to connect (default 5). */
  readonly connectTimeout?: number | undefined
  readonly maxMessageBytes?: number | undefined
  /** The `.env` file to read (default `.env`); `false` reads none. */
  readonly dotEnv?: string | false | undefined
  /** Seconds a call may block, including starting the thread and connecting (default 10). */
  readonly timeout?: number | undefined
}

/** The default blocking limit. */
export const defaultTimeoutMs = 10_000

/** A message ready to publish, with how (priority, delay, idempotency key) as the producer asked. */
interface Encoded {
  readonly taskId: string
  readonly taskName: string
  readonly json: string
  readonly options?: PublishOptions | undefined
}

const isAsyncFunction = (fn: unknown) => typeof fn === "function" && fn.constructor?.name === "AsyncFunction"

// Without a registry no function can be located; say so, after the checks a registry would make.
const noRegistry = TaskRegistry.of({
  appDir: process.cwd(),
  modules: [],
  tasks: [],
  locate: (fn) => {
    const name = typeof fn === "function" ? fn.name || "<anonymous>" : String(fn)
    if (typeof fn !== "function") {
      return Either.left(new Task.InvalidTask({ reason: "NotATask", taskName: name, detail: "pass a declared task (Task.make) or an exported async function" }))
    }
    if (!isAsyncFunction(fn)) {
      return Either.left(new Task.InvalidTask({
        reason: "NotAsync",
        taskName: name,
        detail: `${name} is not an async function: declare it \`export async function ${fn.name || "name"}(…)\` (kc.exec runs async functions only)`
      }))
    }
    return Either.left(new Task.InvalidTask({
      reason: "NotExported",
      taskName: name,
      detail: "scheduleAsyncSync finds a function's module in a task registry, which only a started client has: " +
        "call tc.scheduleAsyncSync(fn, ...args) on a started TaskiqClient whose modules (or fsDiscover) include it, " +
        "or submit a declared task (Task.make)"
    }))
  },
  resolve: () => Effect.die("the standalone scheduleAsyncSync resolves nothing")
})

/**
 * Builds the message a submission would publish, without publishing it (the synchronous paths publish it
 * on their thread). It runs on the calling thread with the producer's own code (argument Schemas, labels,
 * `kc.exec` lookup), by handing it a broker that only records what it is asked to publish.
 */
export const encode = (
  taskOrFn: unknown,
  options: Task.SubmitOptions,
  args: ReadonlyArray<unknown>,
  registry: Context.Tag.Service<TaskRegistry> = noRegistry
): Encoded => {
  let json: string | undefined
  let publishOptions: PublishOptions | undefined
  const recorder = Broker.of({
    queueName: "",
    publish: () => Effect.die("not used"),
    publishRaw: (data, options) =>
      Effect.sync(() => {
        json = data
        publishOptions = options
        return undefined
      }),
    releaseIdempotencyKeys: () => Effect.die("not used"),
    publishManyRaw: () => Effect.die("not used"),
    consumer: () => Effect.die("not used"),
    deadLetters: () => Effect.die("not used"),
    requeueDeadLetters: () => Effect.die("not used"),
    purgeDeadLetters: () => Effect.die("not used"),
    size: Effect.die("not used"),
    delayedSize: Effect.die("not used")
  })
  const exit = Effect.runSyncExit(
    (scheduleWith as (t: unknown, o: Task.SubmitOptions, ...a: ReadonlyArray<unknown>) => ReturnType<typeof scheduleWith>)(
      taskOrFn,
      options,
      ...args
    ).pipe(Effect.provideService(Broker, recorder), Effect.provideService(TaskRegistry, registry))
  )
  if (Exit.isFailure(exit)) throw Cause.squash(exit.cause)
  return { taskId: exit.value.taskId, taskName: exit.value.taskName, json: json!, options: publishOptions }
}

interface Reply {
  readonly id: number
  readonly ok?: boolean
  /** The task that already held the idempotency key (nothing was published). */
  readonly holder?: string | null
  readonly reason?: "Connect" | "Publish"
  readonly detail?: string
  readonly expired?: boolean
  readonly fatal?: string
}

const threadUrl = new URL("./internal/syncPublisherThread.mjs", import.meta.url)
const publishLua = readFileSync(new URL("./Broker/lua/publish.lua", import.meta.url), "utf8")

/** Publishers whose thread is running; closed when the process is about to exit. */
const live = new Set<SyncPublisher>()
let exitHookInstalled = false
const installExitHook = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // `beforeExit` comes when nothing else keeps the process alive: the threads quit Redis politely.
  process.on("beforeExit", () => {
    for (const publisher of live) void publisher.close()
  })
}

/** One long-lived publishing thread for a target. */
export class SyncPublisher {
  private thread: { worker: Worker; port: MessagePort; flag: Int32Array } | undefined
  private seq = 0
  private closing: Promise<void> | undefined

  private readonly signer: Signing.Signer | undefined

  constructor(readonly target: SyncTarget) {
    this.signer = Signing.make(target.signingKeys ?? [])
  }

  /**
   * Publishes a message, blocking until Redis has it; returns its task id, or that of the task already holding its
   * idempotency key (then nothing was published). Throws `BrokerError` or `SyncPublishError`.
   */
  publish(message: Encoded): string {
    const { target } = this
    const url = redactUrl(Redacted.value(target.url))
    const bytes = Buffer.byteLength(message.json)
    if (bytes > target.maxMessageBytes) {
      throw new BrokerError({
        reason: "MessageTooLarge",
        detail: `${bytes} bytes is over maxMessageBytes (${target.maxMessageBytes})`,
        queue: target.queueName
      })
    }
    const fail = (reason: SyncPublishError["reason"], detail: string, cause?: unknown) =>
      new SyncPublishError({
        reason,
        detail,
        taskId: message.taskId,
        taskName: message.taskName,
        queue: target.queueName,
        url,
        ...(cause === undefined ? {} : { cause })
      })
    const thread = this.start()
    const id = ++this.seq
    const deadline = Date.now() + target.timeoutMs
    let seen = Atomics.load(thread.flag, 0)
    // Signed here, on the calling thread: the key never goes to the publishing thread.
    const sig = this.signer?.sign(message.json)
    thread.worker.postMessage({ type: "publish", id, json: message.json, sig, deadline, ...this.route(message) })
    for (;;) {
      for (let m = receiveMessageOnPort(thread.port); m !== undefined; m = receiveMessageOnPort(thread.port)) {
        const reply = m.message as Reply
        if (reply.fatal !== undefined) {
          this.discard()
          throw fail("ThreadFailed", reply.fatal)
        }
        if (reply.id !== id) continue // a late reply to a call that timed out
        if (reply.ok) return reply.holder ?? message.taskId
        if (reply.expired) break
        throw new BrokerError({ reason: reply.reason ?? "Publish", detail: reply.detail ?? "", url, queue: target.queueName })
      }
      if (Atomics.load(thread.flag, 1) === 1) {
        this.discard()
        throw fail("ThreadFailed", "the publishing thread exited; the next call starts a new one")
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0) {
        throw fail(
          "Timeout",
          `Redis did not confirm the message within ${target.timeoutMs} ms; it may or may not have been published. ` +
            "Is Redis reachable at that URL?"
        )
      }
      Atomics.wait(thread.flag, 0, seen, remaining)
      seen = Atomics.load(thread.flag, 0)
    }
  }

  /** Closes the thread (after it quits its Redis connection); the next `publish` would start a new one. */
  close(): Promise<void> {
    const thread = this.thread
    if (thread === undefined) return this.closing ?? Promise.resolve()
    this.thread = undefined
    live.delete(this)
    const { worker } = thread
    this.closing = new Promise<void>((resolve) => {
      const timer = setTimeout(() => void worker.terminate(), 2_000)
      worker.once("exit", () => {
        clearTimeout(timer)
        thread.port.close()
        resolve()
      })
      worker.ref() // until it is gone, even from a `beforeExit` handler
      worker.postMessage({ type: "close" })
    })
    return this.closing
  }

  // Where the thread puts a message, as the Redis broker would: the priority's stream (XADD), or publish.lua for a
  // delay or an idempotency key (the delayed set / the key, taken atomically with the publish).
  private route(message: Encoded) {
    const k = RedisBroker.keys(this.target.queueName)
    const priority = message.options?.priority ?? "normal"
    const delayMs = RedisBroker.delayOf(message.options)
    const idem = message.options?.idempotency
    return delayMs === undefined && idem === undefined
      ? { stream: k.streams[priority] }
      : { script: RedisBroker.publishScript(k, priority, delayMs, idem) }
  }

  private start() {
    if (this.thread !== undefined) return this.thread
    const shared = new SharedArrayBuffer(8)
    const { port1, port2 } = new MessageChannel()
    const worker = new Worker(threadUrl, {
      // No inherited loader flags: the thread is plain JavaScript (see its header).
      execArgv: [],
      workerData: {
        url: Redacted.value(this.target.url),
        queueName: this.target.queueName,
        streams: Object.values(RedisBroker.keys(this.target.queueName).streams),
        publishLua,
        group: settings.defaultGroup,
        connectTimeoutMs: this.target.connectTimeoutMs,
        flag: shared,
        port: port2
      },
      transferList: [port2]
    })
    worker.on("error", () => {}) // reported to the caller through the exit flag
    worker.unref()
    port1.unref()
    this.thread = { worker, port: port1, flag: new Int32Array(shared) }
    live.add(this)
    installExitHook()
    return this.thread
  }

  private discard() {
    const thread = this.thread
    this.thread = undefined
    live.delete(this)
    if (thread !== undefined) {
      thread.port.close()
      void thread.worker.terminate()
    }
  }
}

let standaloneOptions: SyncOptions = {}
let standalone: SyncPublisher | undefined

/** Sets where the standalone `scheduleAsyncSync` publishes (the default is the environment and `.env`). */
export const configure = (options: SyncOptions): void => {
  standaloneOptions = options
  if (standalone !== undefined) void standalone.close()
  standalone = undefined
}

const timeoutMs = (seconds: number | undefined): number => {
  if (seconds === undefined) return defaultTimeoutMs
  if (!(seconds > 0)) throw new RangeError(`the scheduleAsyncSync timeout must be a positive number of seconds, got ${seconds}`)
  return Math.round(seconds * 1000)
}

const standalonePublisher = (): SyncPublisher => {
  if (standalone !== undefined) return standalone
  const resolved = settings.resolveSync(standaloneOptions, false)
  if (Either.isLeft(resolved)) throw resolved.left
  const s = resolved.right
  standalone = new SyncPublisher({
    url: s.url,
    queueName: s.queueName,
    connectTimeoutMs: s.connectTimeoutMs,
    maxMessageBytes: s.maxMessageBytes,
    timeoutMs: timeoutMs(standaloneOptions.timeout),
    signingKeys: s.signingKeys
  })
  return standalone
}

/**
 * Submits a declared task and returns its id once Redis has the message; blocks the calling thread
 * meanwhile (at most the configured timeout, 10 s by default). Exported async functions (`kc.exec`)
 * need a started client: `tc.scheduleAsyncSync(fn, ...args)`.
 * Throws `InvalidTask`, `BrokerError` (Redis refused or unreachable) or `SyncPublishError`.
 */
export const scheduleAsyncSync: {
  <Args extends ReadonlyArray<any>, A, E, R>(task: Task.Task<Args, A, E, R>, ...args: Args): string
  <F extends AsyncFunction>(fn: F, ...args: Parameters<F>): string
} = (taskOrFn: unknown, ...args: ReadonlyArray<unknown>): string => {
  return standalonePublisher().publish(encode(taskOrFn, {}, args))
}

/**
 * Like `scheduleAsyncSync`, with the per-submission options of `scheduleWith` (labels, kwargs, delay, at, priority,
 * idempotencyKey, …). With an idempotency key another task holds, nothing is published and that task's id is returned.
 */
export const scheduleWithSync: {
  <Args extends ReadonlyArray<any>, A, E, R>(task: Task.Task<Args, A, E, R>, options: Task.SubmitOptions, ...args: Args): string
  <F extends AsyncFunction>(fn: F, options: Task.SubmitOptions, ...args: Parameters<F>): string
} = (taskOrFn: unknown, options: Task.SubmitOptions, ...args: ReadonlyArray<unknown>): string =>
  standalonePublisher().publish(encode(taskOrFn, options, args))

/** Closes the standalone publishing thread now (it is also closed when the process is about to exit). */
export const close = (): Promise<void> => {
  const publisher = standalone
  standalone = undefined
  return publisher === undefined ? Promise.resolve() : publisher.close()
}
