/**
 * What the non-Effect entry points (TaskiqClient, runMain, scheduleAsyncSync) share: the Redis settings
 * given in code, completed from the environment and `.env` (read synchronously, so that a blocking
 * `scheduleAsyncSync` can resolve them too), and the default layer built from them.
 */
import { readFileSync } from "node:fs"
import * as FileSystem from "@effect/platform/FileSystem"
import { SystemError } from "@effect/platform/Error"
import * as PlatformConfigProvider from "@effect/platform/PlatformConfigProvider"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type { App } from "../App.js"
import type { Broker } from "../Broker.js"
import { BrokerError } from "../Broker.js"
import * as RedisBroker from "../Broker/Redis.js"
import * as RedisConnection from "../RedisConnection.js"
import type { ResultBackend } from "../ResultBackend.js"
import * as RedisBackend from "../ResultBackend/Redis.js"
import * as Taskiq from "../Taskiq.js"
import * as TaskRegistry from "../TaskRegistry.js"

/** Redis settings given in code; what is left out comes from the environment and `.env`. */
export interface RedisSettingsOptions {
  readonly url?: string | undefined
  readonly queueName?: string | undefined
  readonly resultExTime?: number | undefined
  readonly resultPxTime?: number | undefined
  readonly resultPrefix?: string | undefined
  /** Seconds. */
  readonly connectTimeout?: number | undefined
  readonly maxMessageBytes?: number | undefined
  /** TLS for a `rediss://` URL; when not given, `TASKIQ_REDIS_TLS_*` from the environment. */
  readonly tls?: RedisConnection.TlsOptions | undefined
  /** Message signing keys, the first signs (`RedisBrokerOptions.signingKeys`); when not given, `TASKIQ_SIGNING_KEY(S_ACCEPTED)`. */
  readonly signingKeys?: ReadonlyArray<string | Redacted.Redacted<string>> | undefined
  /** The `.env` file to read (default `.env` in the current folder); `false` reads none. */
  readonly dotEnv?: string | false | undefined
}

/** Everything the non-Effect entry points accept to build their layer. */
export interface LayerOptions extends RedisSettingsOptions, TaskRegistry.TaskRegistryOptions {
  readonly app?: App | undefined
  readonly layer?: Layer.Layer<Broker | ResultBackend, unknown> | undefined
}

/** The services the non-Effect entry points provide. */
export type Services = Broker | ResultBackend | TaskRegistry.TaskRegistry

/** Resolved settings. */
export interface RedisSettings {
  readonly url: Redacted.Redacted<string>
  readonly queueName: string
  readonly resultExTime: number | undefined
  readonly resultPxTime: number | undefined
  readonly resultPrefix: string | undefined
  readonly connectTimeoutMs: number
  readonly maxMessageBytes: number
  readonly maxResultBytes: number | undefined
  readonly tls: RedisConnection.TlsOptions
  readonly signingKeys: ReadonlyArray<string | Redacted.Redacted<string>>
}

/** The broker's defaults, repeated where a thread needs them without the broker. */
export const defaultConnectTimeoutMs = 5_000
export const defaultMaxMessageBytes = 1024 * 1024
export const defaultGroup = "taskiq"

// A file system that reads synchronously: PlatformConfigProvider's dotenv reader then runs under runSync.
const syncFileSystem = FileSystem.layerNoop({
  readFileString: (path) =>
    Effect.try({
      try: () => readFileSync(path, "utf8"),
      catch: (cause) =>
        new SystemError({ reason: "NotFound", module: "FileSystem", method: "readFileString", pathOrDescriptor: path, cause })
    })
})

const configError = (e: unknown) => new BrokerError({ reason: "Config", detail: String(e) })


const read = (options: RedisSettingsOptions, results: boolean) =>
  Effect.gen(function*() {
    const url = options.url !== undefined ? Redacted.make(options.url) : yield* RedisConnection.urlConfig
    const queueName = options.queueName ?? (yield* RedisBroker.queueNameConfig)
    // TLS is one setting too: given in code, the environment's files are not mixed in.
    const tls = options.tls ?? (yield* RedisConnection.tlsConfig)
    const signingKeys = options.signingKeys ?? (yield* RedisBroker.signingKeysConfig)
    // The TTL is one setting: given in code (in either unit), the environment's is not mixed in.
    const fromEnv: RedisBackend.RedisResultBackendOptions = results ? yield* RedisBackend.optionsConfig : {}
    const ttlInCode = options.resultExTime !== undefined || options.resultPxTime !== undefined
    const timeout = options.connectTimeout
    if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) {
      return yield* Effect.fail(`connectTimeout must be a positive number of seconds, got ${timeout}`)
    }
    return {
      url,
      queueName,
      resultExTime: ttlInCode ? options.resultExTime : fromEnv.resultExTime,
      resultPxTime: ttlInCode ? options.resultPxTime : fromEnv.resultPxTime,
      resultPrefix: options.resultPrefix ?? fromEnv.prefix,
      connectTimeoutMs: timeout === undefined ? defaultConnectTimeoutMs : Math.round(timeout * 1000),
      maxMessageBytes: options.maxMessageBytes ?? defaultMaxMessageBytes,
      maxResultBytes: fromEnv.maxResultBytes,
      tls,
      signingKeys
    } satisfies RedisSettings
  }).pipe(Effect.mapError(configError))

/**
 * Completes the settings from the environment and `.env`, synchronously. `results: false` reads only what
 * publishing needs (the URL and the queue), so a bad TTL variable cannot stop a producer-only script.
 */
export const resolveSync = (options: RedisSettingsOptions, results = true): Either.Either<RedisSettings, BrokerError> => {
  let effect: Effect.Effect<RedisSettings, BrokerError> = Effect.suspend(() => read(options, results))
  if (options.dotEnv !== false) {
    effect = effect.pipe(
      Effect.provide(PlatformConfigProvider.layerDotEnvAdd(options.dotEnv ?? ".env").pipe(Layer.provide(syncFileSystem)))
    )
  }
  const exit = Effect.runSyncExit(effect)
  if (Exit.isSuccess(exit)) return Either.right(exit.value)
  const error = Cause.squash(exit.cause)
  return Either.left(error instanceof BrokerError ? error : configError(error))
}

/** The Redis layer for resolved settings. */
export const redisLayer = (s: RedisSettings): Layer.Layer<Broker | ResultBackend, unknown> =>
  Taskiq.layerRedis({
    url: s.url,
    queueName: s.queueName,
    resultExTime: s.resultExTime,
    resultPxTime: s.resultPxTime,
    resultPrefix: s.resultPrefix,
    connectTimeout: s.connectTimeoutMs,
    maxMessageBytes: s.maxMessageBytes,
    maxResultBytes: s.maxResultBytes,
    tls: s.tls,
    signingKeys: s.signingKeys
  })

/** The task registry options: the app's, overridden by those given explicitly. */
export const registryOptions = (options: LayerOptions): TaskRegistry.TaskRegistryOptions => {
  const base = options.app?.registry ?? {}
  return {
    appDir: options.appDir ?? base.appDir,
    modules: options.modules ?? base.modules,
    fsDiscover: options.fsDiscover ?? base.fsDiscover,
    tasksPattern: options.tasksPattern ?? base.tasksPattern
  }
}

/** Whether the broker and backend come from the caller (a layer or an app) rather than from Redis settings. */
export const hasCustomLayer = (options: LayerOptions): boolean => options.layer !== undefined || options.app !== undefined

/**
 * The default layer: the given layer, else the app's, else Redis from the options and the environment;
 * plus the task registry.
 */
export const makeLayer = (options: LayerOptions): Layer.Layer<Services, unknown> => {
  const infra: Layer.Layer<Broker | ResultBackend, unknown> = options.layer ?? options.app?.layer ??
    Layer.unwrapEffect(Effect.map(Effect.suspend(() => resolveSync(options)), redisLayer))
  return Layer.merge(infra, TaskRegistry.layer(registryOptions(options)))
}
