/**
 * The Redis result backend: `SET <prefix:>task_id json PX ttl` plus a notification on a per-task
 * channel, so waiters are pushed the result. One subscriber connection serves every waiter.
 */
import { randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Redis } from "ioredis"
import * as Inbox from "../internal/inbox.js"
import { Pushed } from "../internal/pushed.js"
import * as RedisConnection from "../RedisConnection.js"
import {
  BackendError,
  defaultMaxResultBytes,
  encodeResult,
  minCancelTtlMs,
  resolveTtlMs,
  ResultBackend,
  type ResultTtlOptions
} from "../ResultBackend.js"
import * as TaskProgress from "../TaskProgress.js"
import * as TaskResult from "../TaskResult.js"

/** Options of the Redis result backend. */
export interface RedisResultBackendOptions extends ResultTtlOptions {
  /** Key prefix: results live at `<prefix>:<task_id>` (default none: `<task_id>`, as taskiq-redis). */
  readonly prefix?: string | undefined
}

const lua = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8")

interface ScriptedRedis extends Redis {
  taskiqSetResults(numberOfKeys: number, ...keysThenArgs: Array<string | number>): Promise<number>
  taskiqCancel(
    cancelled: string,
    key: string,
    json: string,
    ttlMs: number,
    cancelTtlMs: number,
    resultChannel: string,
    cancelChannel: string
  ): Promise<number>
  taskiqSetProgress(key: string, json: string, ttlMs: number, channel: string): Promise<number>
  taskiqWatch(watchers: string, member: string, ttlMs: number): Promise<number>
}

/** How long a registration of a process waiting on results' own channels lasts; it is renewed 5 times as often. */
const watchTtlMs = 5 * 60_000

/** Something listening on a subscriber channel; told to catch up after the subscriber reconnected. */
interface Listener {
  readonly onMessage: (message: string) => void
  readonly onResubscribed: () => void
}

/** A subscribed channel: its listeners, and the SUBSCRIBE they await (answered, or confirmed by a reconnect). */
interface Channel {
  readonly name: string
  readonly listeners: Set<Listener>
  readonly subscribed: Promise<void>
  readonly confirm: () => void
}

/** Channels per SUBSCRIBE when a reconnect subscribes again to all of them. */
const subscribeChunk = 1_000

const resultChannel = (key: string) => `__taskiq_result__:${key}`
const progressKey = (key: string) => `${key}__progress`
const progressChannel = (progressKey: string) => `__taskiq_progress__:${progressKey}`

const errorText = (cause: unknown): string => String((cause as Error)?.message ?? cause)

/** Builds the backend over a connection. */
export const make = (options: RedisResultBackendOptions = {}) =>
  Effect.gen(function*() {
    const conn = yield* RedisConnection.RedisConnection
    const ttl = resolveTtlMs(options)
    if (typeof ttl === "string") return yield* new BackendError({ reason: "Config", detail: ttl })
    const maxResultBytes = options.maxResultBytes ?? defaultMaxResultBytes
    if (!(Number.isInteger(maxResultBytes) && maxResultBytes > 0)) {
      return yield* new BackendError({ reason: "Config", detail: `maxResultBytes must be a positive whole number of bytes, got ${maxResultBytes}` })
    }
    const client = conn.client as ScriptedRedis
    if (typeof client.taskiqSetResults !== "function") {
      // The number of keys varies with the batch: it is the first argument of each call.
      client.defineCommand("taskiqSetResults", { lua: lua("set_results") })
      client.defineCommand("taskiqCancel", { numberOfKeys: 2, lua: lua("cancel") })
      client.defineCommand("taskiqSetProgress", { numberOfKeys: 1, lua: lua("set_progress") })
      client.defineCommand("taskiqWatch", { numberOfKeys: 1, lua: lua("watch") })
    }
    const keyOf = (taskId: string) => options.prefix ? `${options.prefix}:${taskId}` : taskId
    // Cancelled tasks' result keys, scored by when the cancellation is forgotten; its name is also the channel's.
    const cancelledKey = keyOf("__taskiq_cancelled__")
    const cancelChannel = `__taskiq_cancel__:${cancelledKey}`
    const cancelTtl = Math.max(ttl, minCancelTtlMs)
    // Workers publish each result on its own channel only while some process waits on such channels (most waits
    // use the process inbox, and a PUBLISH per result nobody hears cost a fifth of Redis's CPU per task). This
    // process is registered, at Redis's clock, while it has such waits: each wait subscribes, is registered, then
    // reads; the registration is renewed while they last, and again after a reconnect (a restarted Redis forgot
    // it) before the waiters catch up.
    const watchersKey = keyOf("__taskiq_watchers__")
    const watcher = randomUUID()
    let watches = 0
    let registered: Promise<unknown> | undefined
    let renewal: ReturnType<typeof setInterval> | undefined
    const registration = () =>
      registered ??= client.taskiqWatch(watchersKey, watcher, watchTtlMs).catch((e) => {
        registered = undefined
        throw e
      })
    const registerAgain = () => {
      registered = undefined
      return registration()
    }
    const stopWatching = () => {
      clearInterval(renewal)
      renewal = undefined
      registered = undefined
      client.zrem(watchersKey, watcher).catch(() => undefined)
    }
    yield* Effect.addFinalizer(() => Effect.sync(() => watches > 0 && stopWatching()))
    // Held by every listener on a result's own channel, for its scope.
    const watching = Effect.acquireRelease(
      Effect.sync(() => {
        if (watches++ > 0) return
        renewal = setInterval(() => void registerAgain().catch(() => undefined), watchTtlMs / 5)
        renewal.unref()
      }),
      () => Effect.sync(() => --watches === 0 && stopWatching())
    ).pipe(
      Effect.zipRight(Effect.tryPromise({ try: registration, catch: (c) => fail("Wait", "", c) }))
    )
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
    // Per channel: its listeners, and the SUBSCRIBE every listener awaits before reading (so none reads too early).
    const channels = new Map<string, Channel>()
    // Since when this backend's inbox subscription has held without a break (Infinity while it is broken): results
    // of tasks submitted since were pushed to it, or are still to come (internal/inbox.ts).
    let inboxSince = Infinity
    const subscriber = yield* Effect.cached(
      // No ready check on a subscriber: ioredis would send INFO after re-subscribing on a reconnect, which a
      // connection in subscriber mode refuses, and fail every pending subscribe (redis/ioredis#2037).
      // Nor ioredis's own re-subscription: it resends a SUBSCRIBE that was half answered when the connection broke
      // with its old count of replies still to come, so later replies answer the wrong commands and channels are
      // dropped for good (a connection killed every few ms kept 4,149 of 20,000). Each reconnect subscribes again
      // to every channel in `channels` with fresh commands; those lost with the old connection are not resent.
      Scope.extend(
        conn.duplicate("results", {
          enableReadyCheck: false,
          disableClientInfo: true,
          autoResubscribe: false,
          autoResendUnfulfilledCommands: false
        }),
        scope
      ).pipe(
        Effect.mapError((e) => new BackendError({ reason: "Connect", detail: e.detail, url: conn.url })),
        Effect.tap((sub) =>
          Effect.sync(() => {
            // Pushes are lost while the connection is down: until it is back, every inbox wait reads first.
            sub.on("close", () => void (inboxSince = Infinity))
            sub.on("message", (channel: string, message: string) => {
              const entry = channels.get(channel)
              if (entry) for (const l of entry.listeners) l.onMessage(message)
            })
            // The connection was ready before this listener was added, so every "ready" it hears is a reconnect.
            sub.on("ready", () => {
              const held = [...channels.values()]
              for (let i = 0; i < held.length; i += subscribeChunk) {
                sub.subscribe(...held.slice(i, i + subscribeChunk).map((entry) => entry.name)).catch(() => undefined)
              }
              // Answered after every SUBSCRIBE above: the channels are back, and whatever was published while they
              // were not is caught up by reading.
              sub.ping().then(() => {
                for (const entry of held) entry.confirm()
                if (watches > 0) return registerAgain()
              }).then(() => {
                for (const entry of channels.values()) for (const l of entry.listeners) l.onResubscribed()
              }, () => undefined) // broken again: the next "ready" catches up
            })
          })
        )
      )
    )

    // A channel subscribed on the current connection, or about to be (by its own SUBSCRIBE or a reconnect's).
    const subscribe = (sub: Redis, channel: string): Channel => {
      let confirm!: () => void
      let refuse!: (cause: unknown) => void
      const subscribed = new Promise<void>((resolve, reject) => {
        confirm = resolve
        refuse = reject
      })
      const entry: Channel = { name: channel, listeners: new Set(), subscribed, confirm }
      sub.subscribe(channel).then(confirm, (cause) => {
        // A failed SUBSCRIBE must not leave the channel looking subscribed to the next listener.
        if (channels.get(channel) === entry) channels.delete(channel)
        refuse(cause)
      })
      channels.set(channel, entry)
      return entry
    }

    // Listens on a channel for the scope; resolves once the SUBSCRIBE is acknowledged. A subscriber reconnecting
    // refuses subscriptions for a moment: callers retry on a `Wait` error.
    const listen = (channel: string, listener: Listener, taskId: string) =>
      Effect.flatMap(subscriber, (sub) =>
        Effect.acquireRelease(
          Effect.tryPromise({
            try: async () => {
              const current = channels.get(channel) ?? subscribe(sub, channel)
              current.listeners.add(listener)
              let timer: ReturnType<typeof setTimeout> | undefined
              try {
                // A SUBSCRIBE caught in a reconnect could stay unanswered: give up on it after a while (the
                // caller retries with a fresh one), so that no wait outlives its timeout for want of a reply.
                await Promise.race([
                  current.subscribed,
                  new Promise((_, reject) => {
                    timer = setTimeout(() => reject(new Error(`no reply to SUBSCRIBE ${channel} within 5 s`)), 5_000)
                  })
                ])
              } catch (e) {
                current.listeners.delete(listener)
                if (channels.get(channel) === current && current.listeners.size === 0) channels.delete(channel)
                throw e
              } finally {
                clearTimeout(timer)
              }
            },
            // Refused for want of permission, it will not be granted by waiting.
            catch: (c) => fail(errorText(c).includes("NOPERM") ? "Connect" : "Wait", taskId, c)
          }),
          () =>
            Effect.promise(async () => {
              const entry = channels.get(channel)
              if (!entry) return
              entry.listeners.delete(listener)
              if (entry.listeners.size === 0) {
                channels.delete(channel)
                // Not awaited: a waiter's answer should not wait for it (a later SUBSCRIBE is ordered after it).
                sub.unsubscribe(channel).catch(() => undefined)
              }
            })
        ))
    // Reads a result already stored (one a push may have missed) and hands it to these waiters.
    const deliverStored = (key: string, waiters: Iterable<(json: string) => void>) =>
      void client.get(key).then((json) => {
        if (json !== null) for (const w of waiters) w(json)
      }, () => undefined)
    const resubscribeRetry = {
      schedule: Schedule.spaced("100 millis"),
      times: 50,
      while: (e: BackendError | TaskResult.ResultDecodeError) => e._tag === "BackendError" && e.reason === "Wait"
    }

    // The result pushed while waiting, decoded; none after the timeout.
    const awaitPushed = (taskId: string, arrived: Pushed<string>, timeout: Duration.Duration) =>
      Effect.flatMap(arrived.await(timeout), (json) => Option.isSome(json) ? decode(taskId, json.value) : Effect.succeed(Option.none()))

    // Waits on the task's own channel: subscribe, then read (a result stored in between is seen by one or the other).
    const waitOnChannel = (taskId: string, timeout: Duration.Duration) =>
      Effect.gen(function*() {
        const key = keyOf(taskId)
        const arrived = new Pushed<string>()
        const listener: Listener = {
          onMessage: arrived.push,
          onResubscribed: () => deliverStored(key, [arrived.push])
        }
        yield* listen(resultChannel(key), listener, taskId)
        // Subscribed, then registered, then the read: a result stored before the registration is read, one after is
        // published to a subscribed channel.
        yield* watching
        const now = yield* get(taskId)
        if (Option.isSome(now)) return now
        return yield* awaitPushed(taskId, arrived, timeout)
      }).pipe(Effect.scoped, Effect.retry(resubscribeRetry))

    // The process inbox (internal/inbox.ts): subscribed once, for the backend's lifetime, on the first wait.
    const inboxWaiters = new Map<string, Set<(json: string) => void>>()
    const inboxListener: Listener = {
      onMessage: (message) => {
        const parts = Inbox.split(message)
        if (parts === undefined) return
        Inbox.forget(Inbox.taskIdOfKey(parts[0]))
        const waiters = inboxWaiters.get(parts[0])
        if (waiters) for (const w of waiters) w(parts[1])
      },
      onResubscribed: () => {
        inboxSince = performance.now()
        for (const [key, waiters] of inboxWaiters) deliverStored(key, waiters)
      }
    }
    let inboxOpened = false
    const openInbox = Effect.suspend(() => {
      if (inboxOpened) return Effect.void
      inboxOpened = true
      // A cancellation is pushed on the task's own channel and the cancel channel, not to the inbox: listen there too.
      const onCancel: Listener = {
        onMessage: (key) => {
          Inbox.forget(Inbox.taskIdOfKey(key))
          const waiters = inboxWaiters.get(key)
          if (waiters) deliverStored(key, waiters)
        },
        onResubscribed: () => undefined
      }
      return listen(Inbox.channel, inboxListener, "").pipe(
        Effect.zipRight(Effect.sync(() => (inboxSince = performance.now()))),
        Effect.zipRight(listen(cancelChannel, onCancel, "")),
        Effect.zipRight(Effect.acquireRelease(Effect.sync(() => Inbox.track(1)), () => Effect.sync(() => Inbox.track(-1)))),
        Scope.extend(scope),
        Effect.tapError(() => Effect.sync(() => (inboxOpened = false))),
        Effect.ignore
      )
    })
    let inboxReady = false

    // Waits for a result that will also be pushed to this process's inbox: no SUBSCRIBE/UNSUBSCRIBE of its own.
    const waitOnInbox = (taskId: string, timeout: Duration.Duration) =>
      Effect.suspend(() => {
        const key = keyOf(taskId)
        const arrived = new Pushed<string>()
        let waiters = inboxWaiters.get(key)
        if (waiters === undefined) inboxWaiters.set(key, waiters = new Set())
        waiters.add(arrived.push)
        const forget = Effect.sync(() => {
          waiters.delete(arrived.push)
          if (waiters.size === 0) inboxWaiters.delete(key)
          // A later wait (after a timeout) reads first: a result stored without a push is found that way.
          Inbox.forget(taskId)
        })
        // Submitted while this subscription held, and not pushed yet: the push is still to come, no read needed.
        const submitted = Inbox.submittedAt(taskId)
        if (submitted !== undefined && submitted >= inboxSince) {
          return Effect.ensuring(awaitPushed(taskId, arrived, timeout), forget)
        }
        // Listening first, then the read: a result stored before is read, one stored after is pushed.
        return get(taskId).pipe(
          Effect.flatMap((now) => Option.isSome(now) ? Effect.succeed(now) : awaitPushed(taskId, arrived, timeout)),
          Effect.ensuring(forget)
        )
      })

    const wait = (taskId: string, timeout: Duration.Duration, replyTo?: string) =>
      inboxReady && replyTo === Inbox.channel
        ? waitOnInbox(taskId, timeout)
        : Effect.zipRight(
          // The first wait opens the inbox, for the tasks submitted from then on.
          inboxOpened ? Effect.void : Effect.forkIn(Effect.tap(openInbox, () => Effect.sync(() => (inboxReady = true))), scope),
          waitOnChannel(taskId, timeout)
        )

    const cancel = (taskId: string, result: TaskResult.TaskResult) =>
      Effect.suspend(() => {
        const json = encodeResult(taskId, result, maxResultBytes)
        if (Either.isLeft(json)) return json.left
        const key = keyOf(taskId)
        return Effect.tryPromise({
          try: () =>
            client.taskiqCancel(cancelledKey, key, json.right, ttl, cancelTtl, resultChannel(key), cancelChannel),
          catch: (c) => fail("Set", taskId, c)
        })
      }).pipe(Effect.map((n) => n === 1))

    const idOfKey = (key: string) => options.prefix ? key.slice(options.prefix.length + 1) : key
    const watchCancellations = (onCancel: (taskId: string) => void) => {
      const snapshot = () =>
        client.zrangebyscore(cancelledKey, Date.now(), "+inf").then((keys) => {
          for (const key of keys) onCancel(idOfKey(key))
        })
      const listener: Listener = {
        onMessage: (key) => onCancel(idOfKey(key)),
        onResubscribed: () => void snapshot().catch(() => undefined)
      }
      // Listening first, then the snapshot: a cancellation in between is seen by one or the other (or both).
      return listen(cancelChannel, listener, "").pipe(
        Effect.zipRight(Effect.tryPromise({ try: snapshot, catch: (c) => fail("Get", "", c) })),
        Effect.retry(resubscribeRetry)
      )
    }

    const setProgress = (taskId: string, progress: TaskProgress.TaskProgress) =>
      Effect.suspend(() => {
        let json: string
        try {
          json = TaskProgress.encodeJson(progress)
        } catch (cause) {
          return new BackendError({ reason: "Encode", taskId, detail: `the progress is not JSON-serializable: ${(cause as Error).message}` })
        }
        const key = progressKey(keyOf(taskId))
        return Effect.tryPromise({
          try: () => client.taskiqSetProgress(key, json, ttl, progressChannel(key)),
          catch: (c) => fail("Set", taskId, c)
        })
      }).pipe(Effect.asVoid)

    const getProgress = (taskId: string) =>
      Effect.tryPromise({ try: () => client.get(progressKey(keyOf(taskId))), catch: (c) => fail("Get", taskId, c) }).pipe(
        Effect.map((json) => json === null ? Option.none() : TaskProgress.decodeJson(json))
      )

    const progress = (taskId: string): Stream.Stream<TaskProgress.TaskProgress, BackendError> =>
      Stream.asyncScoped<TaskProgress.TaskProgress, BackendError>((emit) => {
        const key = keyOf(taskId)
        const pKey = progressKey(key)
        let last: string | undefined
        let ended = false
        const push = (json: string | null) => {
          if (ended || json === null || json === last) return
          last = json
          const p = TaskProgress.decodeJson(json)
          if (Option.isSome(p)) void emit.single(p.value)
        }
        const end = () => {
          if (ended) return
          ended = true
          void emit.end()
        }
        // The last progress, then the end if the result is there: in that order, so the final state is not lost.
        const catchUp = () =>
          client.get(pKey).then(push).then(() => client.exists(key)).then((n) => {
            if (n === 1) end()
          })
        const onProgress: Listener = { onMessage: push, onResubscribed: () => void catchUp().catch(() => undefined) }
        const onResult: Listener = { onMessage: () => void catchUp().catch(() => undefined), onResubscribed: () => undefined }
        return listen(progressChannel(pKey), onProgress, taskId).pipe(
          Effect.zipRight(listen(resultChannel(key), onResult, taskId)),
          Effect.zipRight(watching),
          Effect.zipRight(Effect.tryPromise({ try: catchUp, catch: (c) => fail("Get", taskId, c) })),
          Effect.retry(resubscribeRetry)
        )
      })

    const setMany = (entries: ReadonlyArray<readonly [string, TaskResult.TaskResult]>) =>
      Effect.suspend(() => {
        const n = entries.length
        const keys: Array<string> = new Array(n + 1)
        const args: Array<string | number> = new Array(2 * n + 1)
        keys[0] = cancelledKey
        args[0] = ttl
        for (let i = 0; i < n; i++) {
          const [taskId, result] = entries[i]!
          const json = encodeResult(taskId, result, maxResultBytes)
          if (Either.isLeft(json)) return json.left
          keys[i + 1] = keyOf(taskId)
          args[i + 1] = json.right
          args[n + i + 1] = Inbox.replyChannel(result.labels)
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
        Effect.tryPromise({
          try: () => client.del(keyOf(taskId), progressKey(keyOf(taskId))),
          catch: (c) => fail("Set", taskId, c)
        }).pipe(Effect.asVoid),
      cancel,
      watchCancellations,
      setProgress,
      getProgress,
      progress,
      redisStore: {
        client,
        cancelledKey,
        watchersKey,
        keyOf,
        ttlMs: ttl,
        encode: (taskId, result) => encodeResult(taskId, result, maxResultBytes)
      }
    })
  })

/** The backend over a `RedisConnection`. */
export const layer = (
  options: RedisResultBackendOptions = {}
): Layer.Layer<ResultBackend, BackendError, RedisConnection.RedisConnection> => Layer.scoped(ResultBackend, make(options))

/** `TASKIQ_RESULT_EX_TIME` (s), `TASKIQ_RESULT_PX_TIME` (ms), `TASKIQ_RESULT_PREFIX`, `TASKIQ_MAX_RESULT_BYTES`. */
export const optionsConfig: Config.Config<RedisResultBackendOptions> = Config.all({
  resultExTime: Config.option(Config.number("TASKIQ_RESULT_EX_TIME")).pipe(Config.map(Option.getOrUndefined)),
  resultPxTime: Config.option(Config.integer("TASKIQ_RESULT_PX_TIME")).pipe(Config.map(Option.getOrUndefined)),
  prefix: Config.option(Config.string("TASKIQ_RESULT_PREFIX")).pipe(Config.map(Option.getOrUndefined)),
  maxResultBytes: Config.option(Config.integer("TASKIQ_MAX_RESULT_BYTES")).pipe(Config.map(Option.getOrUndefined))
})

/** The backend configured from the environment. */
export const layerConfig: Layer.Layer<ResultBackend, BackendError, RedisConnection.RedisConnection> = Layer.scoped(
  ResultBackend,
  Effect.flatMap(
    Effect.mapError(optionsConfig, (e) => new BackendError({ reason: "Config", detail: String(e) })),
    make
  )
)
