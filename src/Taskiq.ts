/**
 * Ready-made layers: the Redis broker and result backend over one connection, from options or from
 * the environment and a `.env` file; and their in-memory twins.
 */
import * as PlatformConfigProvider from "@effect/platform/PlatformConfigProvider"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as Layer from "effect/Layer"
import type { Broker, BrokerError } from "./Broker.js"
import * as MemoryBroker from "./Broker/Memory.js"
import * as RedisBroker from "./Broker/Redis.js"
import * as RedisConnection from "./RedisConnection.js"
import type { BackendError, ResultBackend, ResultTtlOptions } from "./ResultBackend.js"
import * as MemoryBackend from "./ResultBackend/Memory.js"
import * as RedisBackend from "./ResultBackend/Redis.js"

/** Options for the Redis layers; everything the environment can set is settable here too. */
export interface RedisOptions extends RedisConnection.RedisConnectionOptions, RedisBroker.RedisBrokerOptions {
  readonly resultExTime?: number | undefined
  readonly resultPxTime?: number | undefined
  readonly resultPrefix?: string | undefined
  /** Results whose JSON is larger are stored as a `ResultTooLarge` error instead (default 16 MiB). */
  readonly maxResultBytes?: number | undefined
}

/** The Redis broker and result backend sharing one connection. */
export const layerRedis = (options: RedisOptions = {}): Layer.Layer<Broker | ResultBackend, BrokerError | BackendError> =>
  Layer.merge(
    RedisBroker.layer(options),
    RedisBackend.layer({
      resultExTime: options.resultExTime,
      resultPxTime: options.resultPxTime,
      prefix: options.resultPrefix,
      maxResultBytes: options.maxResultBytes
    })
  ).pipe(Layer.provide(RedisConnection.layer(options)))

/** A `.env` file (default: the current folder's) added under the environment: the environment wins. */
export const layerDotEnv = (path: string = ".env"): Layer.Layer<never> =>
  PlatformConfigProvider.layerDotEnvAdd(path).pipe(Layer.provide(NodeFileSystem.layer))

/**
 * The Redis layers configured from the environment and `.env`: `TASKIQ_REDIS_URL`, `TASKIQ_QUEUE_NAME`,
 * `TASKIQ_RESULT_EX_TIME` / `TASKIQ_RESULT_PX_TIME`, `TASKIQ_RESULT_PREFIX`, and for `rediss://` the
 * `TASKIQ_REDIS_TLS_CA_FILE` / `_CERT_FILE` / `_KEY_FILE` / `_REJECT_UNAUTHORIZED`. `dotEnv: false` skips the file.
 */
export const layerRedisConfig = (
  options: { readonly dotEnv?: string | false | undefined } = {}
): Layer.Layer<Broker | ResultBackend, BrokerError | BackendError> => {
  const layer = Layer.merge(RedisBroker.layerConfig, RedisBackend.layerConfig).pipe(
    Layer.provide(RedisConnection.layerConfig)
  )
  return options.dotEnv === false ? layer : layer.pipe(Layer.provide(layerDotEnv(options.dotEnv)))
}

/** In-memory broker and backend, for tests and demos in one process. */
export const layerMemory = (
  options: MemoryBroker.MemoryBrokerOptions & ResultTtlOptions = {}
): Layer.Layer<Broker | ResultBackend, BackendError> =>
  Layer.merge(MemoryBroker.layer(options), MemoryBackend.layer(options))
