/**
 * `taskiq worker <module>:<export> [task modules…] [options]`: loads the App, its task modules (named and
 * discovered) and runs `Worker.run` with the App's worker settings overridden by the command line, in this
 * process (`--workers 1`) or in N supervised child processes. A worker that cannot reach Redis when it starts
 * retries with backoff for `--connect-retry` seconds before it gives up.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as App from "../App.js"
import { Broker } from "../Broker.js"
import * as Executor from "../Executor.js"
import { loadApp } from "../internal/appLoader.js"
import * as Supervisor from "../internal/supervisor.js"
import * as V8Tuning from "../internal/v8Tuning.js"
import { isTransientConnectError } from "../RedisConnection.js"
import { ResultBackend } from "../ResultBackend.js"
import * as TaskRegistry from "../TaskRegistry.js"
import * as Worker from "../Worker.js"
import { CliError } from "./CliError.js"

/** Extra time a worker process gets, past its shutdown timeout, to hand messages back and close connections. */
const stopSlack = Duration.seconds(10)

const atLeast = (min: number, name: string) =>
  Options.filterMap((n: number) => n >= min ? Option.some(n) : Option.none(), `--${name} must be at least ${min}`)

const app = Args.text({ name: "module:export" }).pipe(
  Args.withDescription(
    "The application: a module (a path relative to --app-dir, with or without its .ts/.js extension, or a package) " +
      "and the name of its export, an App (`App.make({...})`), a Layer providing Broker and ResultBackend, or an object " +
      "with such a `layer`. Example: examples/app.ts:app"
  )
)

const modules = Args.text({ name: "task-module" }).pipe(
  Args.repeated,
  Args.withDescription(
    "Task modules to import (paths relative to the app dir), added to the App's: their declared tasks are registered, " +
      "their exported async functions can be run by kc.exec."
  )
)

const fsDiscover = Options.boolean("fs-discover").pipe(
  Options.withDescription(
    "Import every file below the app dir matching --tasks-pattern (node_modules and dot folders are skipped). " +
      "Default: the App's fsDiscover, else off."
  )
)

const tasksPattern = Options.text("tasks-pattern").pipe(
  Options.repeated,
  Options.withDescription("A glob, relative to the app dir, for --fs-discover; repeatable. Default: **/tasks.{ts,js}.")
)

const appDir = Options.directory("app-dir", { exists: "yes" }).pipe(
  Options.optional,
  Options.withDescription(
    "The folder <module:export> is looked up in; also the folder task modules are relative to, and below which " +
      "kc.exec may import, unless the App sets its own appDir. Default: the current folder."
  )
)

const workers = Options.integer("workers").pipe(
  atLeast(1, "workers"),
  Options.withDefault(2),
  Options.withDescription(
    "Worker processes. With 2 or more, this process supervises them: a child that dies is restarted with backoff, " +
      "a signal is forwarded to all. 1 runs the worker in this process, with no supervisor."
  )
)

const maxAsyncTasks = Options.integer("max-async-tasks").pipe(
  atLeast(1, "max-async-tasks"),
  Options.optional,
  Options.withDescription("Tasks each worker process runs at once. Default: the App's worker.maxAsyncTasks, else 100.")
)

const maxPrefetch = Options.integer("max-prefetch").pipe(
  atLeast(0, "max-prefetch"),
  Options.optional,
  Options.withDescription(
    "Messages each worker process reads ahead of its free slots, so that short tasks never wait for Redis; what " +
      "one worker prefetched no other can take meanwhile. Default: the App's worker.maxPrefetch, else 0."
  )
)

const ackType = Options.choice("ack-type", ["when_received", "when_executed", "when_saved"]).pipe(
  Options.optional,
  Options.withDescription(
    "When a message is acknowledged: when received (at most once), when executed, or when its result is saved. " +
      "Default: the App's worker.ackPolicy, else when_saved."
  )
)

const shutdownTimeout = Options.float("shutdown-timeout").pipe(
  atLeast(0, "shutdown-timeout"),
  Options.optional,
  Options.withDescription(
    "Seconds running tasks may take to finish after SIGINT/SIGTERM before they are interrupted and handed back. " +
      "Default: the App's worker.shutdownTimeout, else 5."
  )
)

const maxDeliveries = Options.integer("max-deliveries").pipe(
  atLeast(1, "max-deliveries"),
  Options.optional,
  Options.withDescription(
    "Deliveries after which a message whose workers keep dying is dead-lettered. Default: the App's worker.maxDeliveries, else 5."
  )
)

const tracing = Options.boolean("tracing").pipe(
  Options.withDescription(
    "A span per run (taskiq.run <task>, child of the submitting span named by the message's traceparent label), sent " +
      "to the tracer the App's layer sets (e.g. @effect/opentelemetry's). Default: the App's worker.tracing, or on " +
      "when its layer provides TaskTracing.layer."
  )
)

const v8Pretenuring = Options.boolean("v8-pretenuring").pipe(
  Options.withDescription(
    "Keep V8's allocation-site pretenuring on. By default each worker process turns it off: V8 pretenures the " +
      "objects of a task's short waits, which then keep young objects alive and make every young-generation " +
      "collection copy them (15–30 % more CPU per short task, and pauses about three times as long). A node flag about it given at " +
      "start (node --allocation-site-pretenuring …) is always left alone."
  )
)

/** `TASKIQ_CONNECT_RETRY`: seconds a starting worker keeps retrying to connect; default 30. */
export const connectRetryConfig: Config.Config<number> = Config.number("TASKIQ_CONNECT_RETRY").pipe(
  Config.withDefault(30),
  Config.validate({ message: "TASKIQ_CONNECT_RETRY must be a number of seconds, at least 0", validation: (n) => n >= 0 }),
  Config.withDescription("Seconds a starting worker keeps retrying to connect to Redis before it gives up.")
)

const connectRetry = Options.float("connect-retry").pipe(
  atLeast(0, "connect-retry"),
  Options.withFallbackConfig(connectRetryConfig),
  Options.withDescription(
    "Seconds a starting worker keeps retrying when Redis does not answer (with backoff up to 2 s between attempts, " +
      "each failure logged with the URL's password redacted) before it exits 1; 0 gives up at the first failure. " +
      "A wrong password or an untrusted TLS certificate is not retried. Default: TASKIQ_CONNECT_RETRY, else 30."
  )
)

/** The parsed command line. */
export interface WorkerCommandConfig {
  readonly app: string
  readonly modules: ReadonlyArray<string>
  readonly fsDiscover: boolean
  readonly tasksPattern: ReadonlyArray<string>
  readonly appDir: Option.Option<string>
  readonly workers: number
  readonly maxAsyncTasks: Option.Option<number>
  readonly maxPrefetch: Option.Option<number>
  readonly ackType: Option.Option<"when_received" | "when_executed" | "when_saved">
  readonly shutdownTimeout: Option.Option<number>
  readonly maxDeliveries: Option.Option<number>
  /** Spans per run, whatever the App says. */
  readonly tracing: boolean
  /** Seconds to keep retrying the first connection to Redis. */
  readonly connectRetry: number
  /** Keep V8's allocation-site pretenuring (internal/v8Tuning.ts) instead of turning it off. */
  readonly v8Pretenuring: boolean
}

/** The App's worker settings, overridden by the command line's. */
export const workerOptions = (app: App.App, config: WorkerCommandConfig): Worker.WorkerOptions => ({
  ...app.worker,
  maxAsyncTasks: Option.getOrElse(config.maxAsyncTasks, () => app.worker.maxAsyncTasks),
  maxPrefetch: Option.getOrElse(config.maxPrefetch, () => app.worker.maxPrefetch),
  ackPolicy: Option.getOrElse(config.ackType, () => app.worker.ackPolicy),
  shutdownTimeout: Option.match(config.shutdownTimeout, {
    onNone: () => app.worker.shutdownTimeout,
    onSome: (s) => Duration.millis(Math.round(s * 1000))
  }),
  maxDeliveries: Option.getOrElse(config.maxDeliveries, () => app.worker.maxDeliveries),
  ...(config.tracing ? { tracing: true } : {})
})

/**
 * The App's task modules and discovery, with the command line's added. The App's own `appDir`, when it sets
 * one, is kept: producers name `kc.exec` modules relative to it, so the worker must resolve them there too.
 */
export const registryOptions = (app: App.App, config: WorkerCommandConfig): TaskRegistry.TaskRegistryOptions => ({
  appDir: app.registry.appDir ?? Option.getOrUndefined(config.appDir),
  modules: [...(app.registry.modules ?? []), ...config.modules],
  fsDiscover: config.fsDiscover || app.registry.fsDiscover === true,
  tasksPattern: config.tasksPattern.length > 0 ? config.tasksPattern : app.registry.tasksPattern
})

const loadFrom = (config: WorkerCommandConfig) => loadApp(config.app, Option.getOrElse(config.appDir, () => process.cwd()))

// Between attempts: 200 ms doubling, at most 2 s, jittered so that supervised workers spread out.
const connectBackoff = Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("2 seconds")), Schedule.jittered)

/**
 * Runs `effect` again while it fails to connect for a reason that may pass by itself (Redis not up yet,
 * restarting), for up to `within`, logging each failure; then fails with `CliError` (`ConnectFailed`).
 * Other failures, a refused password or an untrusted certificate among them, end it at once.
 */
export const retryConnect = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  within: Duration.DurationInput
): Effect.Effect<A, E | CliError, R> =>
  Effect.suspend(() => {
    const limit = Duration.decode(within)
    const started = Date.now()
    let attempts = 0
    const left = () => Duration.subtract(limit, Duration.millis(Date.now() - started))
    return effect.pipe(
      Effect.tapError((e) =>
        Effect.suspend(() => {
          attempts++
          return isTransientConnectError(e) && Duration.greaterThan(left(), Duration.zero)
            ? Effect.logWarning(
              `connecting to Redis failed (attempt ${attempts}); retrying for up to ${
                seconds(Duration.toMillis(left()))
              } more: ${errorMessage(e)}`
            )
            : Effect.void
        })
      ),
      Effect.retry({
        // The last wait ends at the deadline rather than past it.
        schedule: connectBackoff.pipe(
          Schedule.check(() => Duration.greaterThan(left(), Duration.zero)),
          Schedule.modifyDelay((_, delay) => Duration.min(delay, left()))
        ),
        while: isTransientConnectError
      }),
      Effect.mapError((e) =>
        isTransientConnectError(e)
          ? new CliError({
            reason: "ConnectFailed",
            detail: `could not connect to Redis${
              attempts > 1 ? `: ${attempts} attempts in ${seconds(Date.now() - started)} failed` : ""
            } (--connect-retry / TASKIQ_CONNECT_RETRY: ${seconds(Duration.toMillis(limit))}); the last error: ${errorMessage(e)}`,
            cause: e
          })
          : e
      )
    )
  })

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(1))} s`

const errorMessage = (e: unknown): string => {
  const tag = (e as { _tag?: unknown })?._tag
  const message = e instanceof Error ? e.message : String(e)
  return typeof tag === "string" && !message.startsWith(tag) ? `${tag}: ${message}` : message
}

/** Runs one worker in this process until interrupted; `child` is set when a supervisor started it. */
const runHere = (config: WorkerCommandConfig, child: boolean) =>
  Effect.gen(function*() {
    // Before the App and its task modules load: every allocation decision from here on is made without pretenuring.
    if (!config.v8Pretenuring) {
      const pretenuring = V8Tuning.turnOffPretenuring()
      yield* pretenuring === "off"
        ? Effect.logInfo("V8 allocation-site pretenuring off for this worker process (--v8-pretenuring keeps it on)")
        : Effect.logDebug("V8 allocation-site pretenuring left as node was started")
    }
    const app = yield* loadFrom(config)
    // Task modules load before any connection is made, so that a bad module fails fast.
    const registry = yield* TaskRegistry.make(registryOptions(app, config)).pipe(
      Effect.mapError((e) => new CliError({ reason: "TaskModules", detail: `loading task modules failed: ${e.message}`, cause: e }))
    )
    yield* Effect.logInfo(`task modules (app dir ${registry.appDir}): ${registry.modules.join(", ") || "none"}`)
    const options = workerOptions(app, config)
    let ready = false
    // One attempt: connect (build the app's layer), then run the worker, which fails only while it starts.
    // Each attempt has its own scope, so a failed one leaves no connection behind.
    const attempt = Effect.gen(function*() {
      const services = yield* Layer.build(app.layer)
      for (const [tag, name] of [[Broker, "Broker"], [ResultBackend, "ResultBackend"]] as const) {
        if (Option.isNone(Context.getOption(services, tag as Context.Tag<unknown, unknown>))) {
          return yield* new CliError({ reason: "MissingService", detail: `the app's layer provides no ${name}` })
        }
      }
      const executor = yield* Layer.build(
        Executor.layerRegistry(app.tasks).pipe(
          Layer.provide(Layer.succeed(TaskRegistry.TaskRegistry, registry)),
          Layer.provide(Layer.succeedContext(services))
        ) as Layer.Layer<Executor.Executor>
      )
      if (child && !ready) Supervisor.notifyReady()
      ready = true
      return yield* Worker.run(options).pipe(
        Effect.provide(Context.merge(services as Context.Context<Broker | ResultBackend>, executor))
      )
    }).pipe(Effect.scoped)
    const worker = yield* Effect.fork(retryConnect(attempt, Duration.seconds(config.connectRetry)))
    // Interrupted (SIGINT/SIGTERM): say so, then let the worker drain; its scope closes the connections after.
    return yield* Fiber.join(worker).pipe(
      Effect.onInterrupt(() =>
        Effect.logInfo(
          ready
            ? `shutting down: no new tasks; running tasks have ${
              Duration.format(Duration.decode(options.shutdownTimeout ?? Worker.defaults.shutdownTimeout))
            } to finish`
            : "shutting down before connecting"
        ).pipe(
          Effect.zipRight(Fiber.interrupt(worker)),
          Effect.zipRight(Effect.logInfo("worker stopped"))
        )
      )
    )
  })

const handler = (config: WorkerCommandConfig) =>
  Effect.suspend(() => {
    const index = Supervisor.takeChildIndex()
    if (index !== undefined) {
      Supervisor.setUpChild()
      return runHere(config, true).pipe(Effect.annotateLogs({ worker: index }))
    }
    if (config.workers === 1) return runHere(config, false)
    // The supervisor loads the App too: a bad <module:export> is reported once, before any child starts.
    return loadFrom(config).pipe(
      Effect.flatMap((app) =>
        Supervisor.supervise({
          workers: config.workers,
          stopTimeout: Duration.sum(
            Duration.decode(workerOptions(app, config).shutdownTimeout ?? Worker.defaults.shutdownTimeout),
            stopSlack
          ),
          command: { script: process.argv[1]!, args: process.argv.slice(2), execArgv: process.execArgv }
        })
      )
    )
  })

/** The `worker` subcommand. */
export const command = Command.make("worker", {
  app,
  modules,
  fsDiscover,
  tasksPattern,
  appDir,
  workers,
  maxAsyncTasks,
  maxPrefetch,
  ackType,
  shutdownTimeout,
  maxDeliveries,
  tracing,
  connectRetry,
  v8Pretenuring
}, handler).pipe(
  Command.withDescription(
    "Run workers consuming the App's queue. SIGINT/SIGTERM drain them (no new tasks; running tasks get " +
      "--shutdown-timeout to finish, the rest go back to the queue) and exit 0; with --workers N ≥ 2 the signal is " +
      "forwarded to each worker process, and a second one kills them. --log-level sets the minimum log level " +
      "(default info). Options given here override the App's worker settings. A worker that cannot reach Redis " +
      "when it starts retries for --connect-retry seconds, then exits 1."
  )
)
