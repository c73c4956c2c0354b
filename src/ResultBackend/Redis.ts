/**
 * The Redis result backend: `SET <prefix:>task_id json PX ttl` plus a notification on a per-task
 * channel, so waiters are pushed the result. One subscriber connection serves every waiter.
 */
import { readFileSync } from "node:fs"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type { Redis } from "ioredis"
import * as RedisConnection from "../RedisConnection.js"
import { BackendError, encodeResult, resolveTtlMs, ResultBackend, type ResultTtlOptions } from "../ResultBackend.js"
import * as TaskResult from "../TaskResult.js"

/** Options of the Redis result backend. */
export interface RedisResultBackendOptions extends ResultTtlOptions {
  /** Key prefix: results live at `<prefix>:<task_id>` (default none: `<task_id>`, as taskiq-redis). */
  readonly prefix?: string | undefined
}

const setResultsLua = readFileSync(new URL("./lua/set_results.lua", import.meta.url), "utf8")

interface ScriptedRedis extends Redis {
  taskiqSetResults(numberOfKeys: number, ...keysThenArgs: Array<string | number>): Promise<number>
}

const errorText = (cause: unknown): string => String((cause as Error)?.message ?? cause)

/** Builds the backend over a connection. */
export const make = (options: RedisResultBackendOptions = {}) =>
  Effect.gen(function*() {
    const conn = yield* RedisConnection.RedisConnection
    const ttl = resolveTtlMs(options)
    if (typeof ttl === "string") return yield* new BackendError({ reason: "Config", detail: ttl })
    const client = conn.client as ScriptedRedis
    if (typeof client.taskiqSetResults !== "function") {
      // The number of keys varies with the batch: it is the first argument of each call.
      client.defineCommand("taskiqSetResults", { lua: setResultsLua })
    }
    const keyOf = (taskId: string) => options.prefix ? `${options.prefix}:${taskId}` : taskId
    const channelOf = (key: string) => `__taskiq_result__:${key}`
    const fail = (reason: BackendError["reason"], taskId: string, cause: unknown) =>
      new BackendError({ reason, taskId, url: conn.url, detail: errorText(cause), cause })

    const decode = (taskId: string, json: string | null) => {
      if (json === null) return Effect.succeed(Option.none())
      const r = TaskResult.decodeJson(taskId, json)
      return Either.isRight(r) ? Effect.succeed(Option.some(r.right)) : Effect.fail(r.left)
    }

    const get = (taskId: string) =>
      Effect.tryPromise({ try: () => client.get(keyOf(taskId)), catch: (c) => fail("Get", taskId, c) }).pipe(
        Effect.flatMap((json) => decode(taskId, json))
      )

    // One subscriber connection, opened on the first wait and closed with the backend.
    const scope = yield* Effect.scope
    // Per channel: its listeners, and the SUBSCRIBE every waiter awaits before reading (so none reads too early).
    const channels = new Map<string, { readonly listeners: Set<(json: string) => void>; readonly subscribed: Promise<unknown> }>()
    const subscriber = yield* Effect.cached(
      // No ready check on a subscriber: ioredis would send INFO after re-subscribing on a reconnect, which a
      // connection in subscriber mode refuses, and fail every pending subscribe (redis/ioredis#2037).
      Scope.extend(conn.duplicate("results", { enableReadyCheck: false, disableClientInfo: true }), scope).pipe(
        Effect.mapError((e) => new BackendError({ reason: "Connect", detail: e.detail, url: conn.url })),
        Effect.tap((sub) =>
          Effect.sync(() => {
            sub.on("message", (channel: string, json: string) => {
              const entry = channels.get(channel)
              if (entry) for (const l of entry.listeners) l(json)
            })
            // A result published while the subscriber was reconnecting would be missed: read the keys again.
            let first = true
            sub.on("ready", () => {
              if (first) return void (first = false)
              for (const [channel, entry] of channels) {
                const key = channel.slice("__taskiq_result__:".length)
                client.get(key).then((json) => {
                  if (json !== null) for (const l of entry.listeners) l(json)
                }, () => undefined)
              }
            })
          })
        )
      )
    )

    const wait = (taskId: string, timeout: Duration.Duration) =>
      Effect.gen(function*() {
        const sub = yield* subscriber
        const key = keyOf(taskId)
        const channel = channelOf(key)
        let resolve!: (json: string) => void
        const arrived = new Promise<string>((r) => (resolve = r))
        const listener = (json: string) => resolve(json)
        const register = Effect.tryPromise({
          try: async () => {
            let entry = channels.get(channel)
            if (entry === undefined) {
              const created = { listeners: new Set<(json: string) => void>(), subscribed: sub.subscribe(channel) }
              // A failed SUBSCRIBE must not leave the channel looking subscribed to the next waiter.
              created.subscribed.catch(() => {
                if (channels.get(channel) === created) channels.delete(channel)
              })
              channels.set(channel, created)
              entry = created
            }
            entry.listeners.add(listener)
            try {
              await entry.subscribed
            } catch (e) {
              entry.listeners.delete(listener)
              throw e
            }
          },
          catch: (c) => fail("Wait", taskId, c)
        })
        const unregister = Effect.promise(async () => {
          const entry = channels.get(channel)
          if (!entry) return
          entry.listeners.delete(listener)
          if (entry.listeners.size === 0) {
            channels.delete(channel)
            await sub.unsubscribe(channel).catch(() => undefined)
          }
        })
        return yield* Effect.acquireUseRelease(
          register,
          () =>
            // Subscribed first, then read: a result stored in between is seen by one or the other.
            get(taskId).pipe(
              Effect.flatMap((now) =>
                Option.isSome(now)
                  ? Effect.succeed(now)
                  : Effect.promise(() => arrived).pipe(
                    Effect.flatMap((json) => decode(taskId, json)),
                    Effect.timeoutTo({ duration: timeout, onSuccess: (r) => r, onTimeout: () => Option.none() })
                  )
              )
            ),
          () => unregister
        ).pipe(
          // A subscriber reconnecting refuses subscriptions for a moment: subscribe again (a failed attempt
          // has already removed its listener).
          Effect.retry({
            schedule: Schedule.spaced("100 millis"),
            times: 50,
            while: (e) => e._tag === "BackendError" && e.reason === "Wait"
          })
        )
      })

    const setMany = (entries: ReadonlyArray<readonly [string, TaskResult.TaskResult]>) =>
      Effect.suspend(() => {
        const keys: Array<string> = new Array(entries.length)
        const args: Array<string | number> = new Array(entries.length + 1)
        args[0] = ttl
        for (let i = 0; i < entries.length; i++) {
          const [taskId, result] = entries[i]!
          const json = encodeResult(taskId, result)
          if (Either.isLeft(json)) return json.left
          keys[i] = keyOf(taskId)
          args[i + 1] = json.right
        }
        return Effect.tryPromise({
          try: () => client.taskiqSetResults(keys.length, ...keys, ...args),
          catch: (c) => fail("Set", entries[0]?.[0] ?? "", c)
        })
      }).pipe(Effect.asVoid)

    return ResultBackend.of({
      set: (taskId, result) => setMany([[taskId, result]]),
      setMany,
      get,
      wait,
      delete: (taskId) =>
        Effect.tryPromise({ try: () => client.del(keyOf(taskId)), catch: (c) => fail("Set", taskId, c) }).pipe(
          Effect.asVoid
        )
    })
  })

/** The backend over a `RedisConnection`. */
export const layer = (
  options: RedisResultBackendOptions = {}
): Layer.Layer<ResultBackend, BackendError, RedisConnection.RedisConnection> => Layer.scoped(ResultBackend, make(options))

/** `TASKIQ_RESULT_EX_TIME` (s), `TASKIQ_RESULT_PX_TIME` (ms), `TASKIQ_RESULT_PREFIX`. */
export const optionsConfig: Config.Config<RedisResultBackendOptions> = Config.all({
  resultExTime: Config.option(Config.number("TASKIQ_RESULT_EX_TIME")).pipe(Config.map(Option.getOrUndefined)),
  resultPxTime: Config.option(Config.integer("TASKIQ_RESULT_PX_TIME")).pipe(Config.map(Option.getOrUndefined)),
  prefix: Config.option(Config.string("TASKIQ_RESULT_PREFIX")).pipe(Config.map(Option.getOrUndefined))
})

/** The backend configured from the environment. */
export const layerConfig: Layer.Layer<ResultBackend, BackendError, RedisConnection.RedisConnection> = Layer.scoped(
  ResultBackend,
  Effect.flatMap(
    Effect.mapError(optionsConfig, (e) => new BackendError({ reason: "Config", detail: String(e) })),
    make
  )
)
