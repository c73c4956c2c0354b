/**
 * A Redis connection shared by the Redis broker and result backend, and the place where the URL's
 * secret is unwrapped (and nowhere else).
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { Redis, type RedisOptions } from "ioredis"
import { BrokerError } from "./Broker.js"

/** The default Redis URL, as in taskiq's documentation. */
export const defaultUrl = "redis://127.0.0.1:6379/0"

/** A URL with its password replaced, safe for logs and errors. */
export const redactUrl = (url: string): string => {
  try {
    const u = new URL(url)
    if (u.password) u.password = "***"
    return u.toString()
  } catch {
    return "<unparseable redis url>"
  }
}

// An error text never carries the URL's password, whatever the driver put in it.
const redactSecrets = (text: string, url: string): string => {
  try {
    const password = decodeURIComponent(new URL(url).password)
    return password ? text.split(password).join("***") : text
  } catch {
    return text
  }
}

/** Options for a Redis connection. */
export interface RedisConnectionOptions {
  readonly url?: Redacted.Redacted<string> | string | undefined
  /** How long connecting (and the first PING) may take before `BrokerError` (default 5 s). */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Extra ioredis options (TLS certificates, sentinel settings…). */
  readonly redisOptions?: RedisOptions | undefined
}

/** A live connection and a way to open more with the same settings (blocking readers, subscribers). */
export class RedisConnection extends Context.Tag("effect-taskiq/RedisConnection")<RedisConnection, {
  /** The command connection, auto-pipelined: concurrent commands share round trips. */
  readonly client: Redis
  /** The URL with its password redacted. */
  readonly url: string
  /** A new connection with the same settings (and these overrides), closed with the scope. */
  readonly duplicate: (purpose: string, overrides?: RedisOptions) => Effect.Effect<Redis, BrokerError, Scope.Scope>
}>() {}

const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 10), 2_000)

const open = (
  url: string,
  redacted: string,
  timeout: Duration.Duration,
  extra: RedisOptions | undefined,
  autoPipelining: boolean
): Effect.Effect<Redis, BrokerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const client = new Redis(url, {
        lazyConnect: true,
        enableAutoPipelining: autoPipelining,
        maxRetriesPerRequest: null,
        retryStrategy,
        connectTimeout: Duration.toMillis(timeout),
        ...extra
      })
      // ioredis reports every failed reconnect as an 'error' event; without a listener Node would crash.
      // The first one says why (ECONNREFUSED, a TLS or auth failure); connect() itself only says "closed".
      let firstError: Error | undefined
      client.on("error", (e: Error) => void (firstError ??= e))
      return Effect.tryPromise({
        try: () => client.connect().then(() => client.ping()),
        catch: (cause) =>
          new BrokerError({
            reason: "Connect",
            detail: redactSecrets(String(firstError?.message ?? (cause as Error)?.message ?? cause), url),
            url: redacted
          })
      }).pipe(
        // acquireRelease runs this uninterruptibly; the timeout must still be able to cut a hung connect.
        Effect.interruptible,
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new BrokerError({
              reason: "Connect",
              detail: `no answer within ${Duration.format(timeout)}; is Redis running there?`,
              url: redacted
            })
        }),
        Effect.tapError(() => Effect.sync(() => client.disconnect())),
        Effect.as(client)
      )
    }),
    (client) =>
      Effect.promise(() => client.quit().catch(() => undefined)).pipe(
        Effect.timeout("1 second"),
        Effect.ensuring(Effect.sync(() => client.disconnect())),
        Effect.ignore
      )
  )

/** Connects (with a bounded wait) and closes the connections with the scope. */
export const make = (
  options: RedisConnectionOptions = {}
): Effect.Effect<Context.Tag.Service<RedisConnection>, BrokerError, Scope.Scope> =>
  Effect.gen(function*() {
    const raw = options.url === undefined
      ? defaultUrl
      : typeof options.url === "string"
      ? options.url
      : Redacted.value(options.url)
    const url = redactUrl(raw)
    const timeout = Duration.decode(options.connectTimeout ?? "5 seconds")
    const client = yield* open(raw, url, timeout, options.redisOptions, true)
    return RedisConnection.of({
      client,
      url,
      duplicate: (purpose, overrides) =>
        open(raw, url, timeout, { ...options.redisOptions, ...overrides, connectionName: `taskiq:${purpose}` }, false)
    })
  })

/** A layer with one connection. */
export const layer = (options: RedisConnectionOptions = {}): Layer.Layer<RedisConnection, BrokerError> =>
  Layer.scoped(RedisConnection, make(options))

/** `TASKIQ_REDIS_URL`, redacted; defaults to `redis://127.0.0.1:6379/0`. */
export const urlConfig: Config.Config<Redacted.Redacted<string>> = Config.redacted("TASKIQ_REDIS_URL").pipe(
  Config.withDefault(Redacted.make(defaultUrl)),
  Config.withDescription("The Redis URL (redis:// or rediss://, with an optional ACL user and password).")
)

/** A layer configured from the environment (`TASKIQ_REDIS_URL`). */
export const layerConfig: Layer.Layer<RedisConnection, BrokerError> = Layer.scoped(
  RedisConnection,
  Effect.flatMap(
    Effect.mapError(urlConfig, (e) => new BrokerError({ reason: "Config", detail: String(e) })),
    (url) => make({ url })
  )
)
