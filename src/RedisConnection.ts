/**
 * A Redis connection shared by the Redis broker and result backend, and the place where the URL's
 * secret is unwrapped (and nowhere else). TLS (`rediss://`) takes its CA and client certificate from files.
 */
import { readFileSync } from "node:fs"
import type { ConnectionOptions } from "node:tls"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
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

// Node's codes for a server certificate that does not verify (node:tls, OpenSSL's X509_V_ERR_* names).
const untrustedCertificate = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID"
])

const untrustedHint = "the server's TLS certificate is not trusted: give its CA with TASKIQ_REDIS_TLS_CA_FILE (option tls.caFile)"
const authHint = "check the ACL user and password in the URL"

// What a failed connect says: the driver's first error, redacted, with what to do about the permanent ones.
const connectDetail = (error: unknown, url: string): string => {
  const text = redactSecrets(String((error as Error)?.message ?? error), url)
  const code = (error as { code?: unknown })?.code
  if (typeof code === "string" && untrustedCertificate.has(code)) return `${text} (${code}); ${untrustedHint}`
  if (/^(WRONGPASS|NOAUTH)\b/.test(text)) return `${text} (${authHint})`
  return text
}

/**
 * Whether a failed connect may pass by itself (Redis not up yet, restarting, failing over), unlike a
 * refused password, a missing permission or an untrusted certificate, which only a change of settings fixes.
 */
export const isTransientConnectError = (error: unknown): boolean => {
  const { detail, reason } = error as { readonly reason?: unknown; readonly detail?: unknown }
  if (reason !== "Connect" || typeof detail !== "string") return false
  return !(detail.includes(untrustedHint) || /^(WRONGPASS|NOAUTH|NOPERM)\b/.test(detail))
}

/** Options for a Redis connection. */
export interface RedisConnectionOptions {
  readonly url?: Redacted.Redacted<string> | string | undefined
  /** How long connecting (and the first PING) may take before `BrokerError` (default 5 s). */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** TLS settings for a `rediss://` URL: the CA to trust, a client certificate. */
  readonly tls?: TlsOptions | undefined
  /** Extra ioredis options (sentinel settings…); its `tls` is merged over the one `tls` makes. */
  readonly redisOptions?: RedisOptions | undefined
}

/** TLS settings, as PEM files; used only with a `rediss://` URL. */
export interface TlsOptions {
  /** The CA certificates that sign the server's certificate (instead of Node's default CAs). */
  readonly caFile?: string | undefined
  /** A client certificate, for a server that asks for one (`tls-auth-clients yes`); needs `keyFile`. */
  readonly certFile?: string | undefined
  /** The client certificate's private key. */
  readonly keyFile?: string | undefined
  /** Verify the server's certificate (default true). `false` encrypts without knowing who answers. */
  readonly rejectUnauthorized?: boolean | undefined
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

// Auto-pipelining holds every command until the next setImmediate, to write those of a turn together. These are
// already one per batch (a worker's completion script, coalesced publishes: internal/coalescer.ts): they go out at
// once, without the wait or a pipeline object of their own.
const sentAtOnce = ["xadd", "taskiqComplete", "taskiqPublishMany"]

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
        autoPipeliningIgnoredCommands: sentAtOnce,
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
        catch: (cause) => new BrokerError({ reason: "Connect", detail: connectDetail(firstError ?? cause, url), url: redacted })
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

const isSet = (tls: TlsOptions | undefined): tls is TlsOptions =>
  tls !== undefined && Object.values(tls).some((v) => v !== undefined)

/** The node:tls options for these settings (the files read now), or none when nothing is set. */
const tlsConnectionOptions = (
  tls: TlsOptions | undefined,
  raw: string,
  redacted: string
): Effect.Effect<ConnectionOptions | undefined, BrokerError> =>
  Effect.suspend(() => {
    if (!isSet(tls)) return Effect.succeed(undefined)
    const configError = (detail: string) => new BrokerError({ reason: "Config", detail, url: redacted })
    // Certificates on a plain connection would be ignored: say so rather than talk to Redis in clear text.
    if (!raw.startsWith("rediss://")) {
      return Effect.fail(configError("TLS settings (TASKIQ_REDIS_TLS_*, option tls) need a rediss:// URL"))
    }
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      return Effect.fail(configError("a TLS client certificate needs both TASKIQ_REDIS_TLS_CERT_FILE and TASKIQ_REDIS_TLS_KEY_FILE"))
    }
    const read = (what: string, path: string | undefined) =>
      path === undefined ? Effect.succeed(undefined) : Effect.try({
        try: () => readFileSync(path),
        catch: (e) => configError(`cannot read the TLS ${what} file ${path}: ${(e as Error).message}`)
      })
    return Effect.map(
      Effect.all({ ca: read("CA", tls.caFile), cert: read("certificate", tls.certFile), key: read("key", tls.keyFile) }),
      (files): ConnectionOptions => {
        const options: { -readonly [K in keyof ConnectionOptions]: ConnectionOptions[K] } = {}
        if (files.ca !== undefined) options.ca = files.ca
        if (files.cert !== undefined) options.cert = files.cert
        if (files.key !== undefined) options.key = files.key
        if (tls.rejectUnauthorized !== undefined) options.rejectUnauthorized = tls.rejectUnauthorized
        return options
      }
    )
  })

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
    const tls = yield* tlsConnectionOptions(options.tls, raw, url)
    const redisOptions: RedisOptions | undefined = tls === undefined
      ? options.redisOptions
      : { ...options.redisOptions, tls: { ...tls, ...options.redisOptions?.tls } }
    const client = yield* open(raw, url, timeout, redisOptions, true)
    return RedisConnection.of({
      client,
      url,
      duplicate: (purpose, overrides) =>
        open(raw, url, timeout, { ...redisOptions, ...overrides, connectionName: `taskiq:${purpose}` }, false)
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

const optionalFile = (name: string, description: string): Config.Config<string | undefined> =>
  Config.string(name).pipe(Config.withDescription(description), Config.option, Config.map(Option.getOrUndefined))

/**
 * `TASKIQ_REDIS_TLS_CA_FILE`, `TASKIQ_REDIS_TLS_CERT_FILE`, `TASKIQ_REDIS_TLS_KEY_FILE` and
 * `TASKIQ_REDIS_TLS_REJECT_UNAUTHORIZED`: TLS for a `rediss://` URL; none set means Node's defaults.
 */
export const tlsConfig: Config.Config<TlsOptions> = Config.all({
  caFile: optionalFile("TASKIQ_REDIS_TLS_CA_FILE", "A PEM file of the CA certificates that sign the Redis server's certificate."),
  certFile: optionalFile("TASKIQ_REDIS_TLS_CERT_FILE", "A PEM client certificate, for a Redis that asks for one."),
  keyFile: optionalFile("TASKIQ_REDIS_TLS_KEY_FILE", "The PEM private key of TASKIQ_REDIS_TLS_CERT_FILE."),
  rejectUnauthorized: Config.boolean("TASKIQ_REDIS_TLS_REJECT_UNAUTHORIZED").pipe(
    Config.withDescription("Verify the Redis server's certificate (default true)."),
    Config.option,
    Config.map(Option.getOrUndefined)
  )
})

/** A layer configured from the environment (`TASKIQ_REDIS_URL` and the `TASKIQ_REDIS_TLS_*` files). */
export const layerConfig: Layer.Layer<RedisConnection, BrokerError> = Layer.scoped(
  RedisConnection,
  Effect.flatMap(
    Effect.mapError(Config.all({ url: urlConfig, tls: tlsConfig }), (e) => new BrokerError({ reason: "Config", detail: String(e) })),
    make
  )
)
