/**
 * An in-memory result backend with the Redis backend's semantics (JSON round trip, TTL, pushed waits).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
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

/** Builds an in-memory backend; results are stored as JSON so encoding problems show up here too. */
export const make = (options: ResultTtlOptions = {}) =>
  Effect.gen(function*() {
    const ttl = resolveTtlMs(options)
    if (typeof ttl === "string") return yield* new BackendError({ reason: "Config", detail: ttl })
    const maxResultBytes = options.maxResultBytes ?? defaultMaxResultBytes
    if (!(Number.isInteger(maxResultBytes) && maxResultBytes > 0)) {
      return yield* new BackendError({ reason: "Config", detail: `maxResultBytes must be a positive whole number of bytes, got ${maxResultBytes}` })
    }
    const store = new Map<string, { json: string; expiresAt: number }>()
    const waiters = new Map<string, Set<() => void>>()
    const cancelled = new Map<string, number>()
    const cancelWatchers = new Set<(taskId: string) => void>()
    const progressOf = new Map<string, { json: string; expiresAt: number }>()
    const progressWatchers = new Map<string, Set<() => void>>()
    const notify = (map: Map<string, Set<() => void>>, taskId: string) => {
      const listeners = map.get(taskId)
      if (listeners) for (const w of listeners) w()
    }
    const watch = (map: Map<string, Set<() => void>>, taskId: string, f: () => void) => {
      let set = map.get(taskId)
      if (!set) map.set(taskId, set = new Set())
      set.add(f)
      return () => {
        set.delete(f)
        if (set.size === 0) map.delete(taskId)
      }
    }

    const read = (taskId: string): Option.Option<string> => {
      const hit = store.get(taskId)
      if (!hit) return Option.none()
      if (hit.expiresAt <= Date.now()) {
        store.delete(taskId)
        return Option.none()
      }
      return Option.some(hit.json)
    }
    const decode = (taskId: string, json: Option.Option<string>) => {
      if (Option.isNone(json)) return Effect.succeed(Option.none())
      const r = TaskResult.decodeJson(taskId, json.value)
      return Either.isRight(r) ? Effect.succeed(Option.some(r.right)) : Effect.fail(r.left)
    }
    const get = (taskId: string) => Effect.suspend(() => decode(taskId, read(taskId)))

    const isCancelled = (taskId: string) => (cancelled.get(taskId) ?? 0) > Date.now()
    const store_ = (taskId: string, json: string) => {
      store.set(taskId, { json, expiresAt: Date.now() + ttl })
      notify(waiters, taskId)
      notify(progressWatchers, taskId)
    }
    // A cancelled task keeps its TaskCancelled result, as with Redis.
    const set = (taskId: string, result: TaskResult.TaskResult) =>
      Effect.map(encodeResult(taskId, result, maxResultBytes), (json) => {
        if (!isCancelled(taskId)) store_(taskId, json)
      })

    const getProgress = (taskId: string) =>
      Effect.sync(() => {
        const hit = progressOf.get(taskId)
        return hit === undefined || hit.expiresAt <= Date.now() ? Option.none() : TaskProgress.decodeJson(hit.json)
      })

    return ResultBackend.of({
      set,
      setMany: (entries) => Effect.forEach(entries, ([taskId, result]) => set(taskId, result), { discard: true }),
      get,
      wait: (taskId, timeout) =>
        Effect.async<void>((resume) => {
          if (store.has(taskId)) return resume(Effect.void)
          const done = () => resume(Effect.void)
          let set = waiters.get(taskId)
          if (!set) waiters.set(taskId, set = new Set())
          set.add(done)
          return Effect.sync(() => {
            set.delete(done)
            if (set.size === 0) waiters.delete(taskId)
          })
        }).pipe(
          Effect.timeoutTo({ duration: timeout, onSuccess: () => true, onTimeout: () => false }),
          Effect.flatMap((arrived) => arrived ? get(taskId) : Effect.succeed(Option.none()))
        ),
      delete: (taskId) => Effect.sync(() => {
        store.delete(taskId)
        progressOf.delete(taskId)
      }),
      cancel: (taskId, result) =>
        Effect.flatMap(encodeResult(taskId, result, maxResultBytes), (json) =>
          Effect.sync(() => {
            if (Option.isSome(read(taskId))) return false
            cancelled.set(taskId, Date.now() + Math.max(ttl, minCancelTtlMs))
            store_(taskId, json)
            for (const w of cancelWatchers) w(taskId)
            return true
          })),
      watchCancellations: (onCancel) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            cancelWatchers.add(onCancel)
            for (const taskId of cancelled.keys()) if (isCancelled(taskId)) onCancel(taskId)
          }),
          () => Effect.sync(() => cancelWatchers.delete(onCancel))
        ),
      setProgress: (taskId, progress) =>
        Effect.try({
          try: () => {
            progressOf.set(taskId, { json: TaskProgress.encodeJson(progress), expiresAt: Date.now() + ttl })
            notify(progressWatchers, taskId)
          },
          catch: (cause) =>
            new BackendError({ reason: "Encode", taskId, detail: `the progress is not JSON-serializable: ${(cause as Error).message}` })
        }),
      getProgress,
      progress: (taskId) =>
        Stream.asyncScoped<TaskProgress.TaskProgress, BackendError>((emit) => {
          let last: string | undefined
          let ended = false
          const catchUp = () => {
            if (ended) return
            const hit = progressOf.get(taskId)
            if (hit !== undefined && hit.json !== last) {
              last = hit.json
              const p = TaskProgress.decodeJson(hit.json)
              if (Option.isSome(p)) void emit.single(p.value)
            }
            if (Option.isSome(read(taskId))) {
              ended = true
              void emit.end()
            }
          }
          return Effect.acquireRelease(
            Effect.sync(() => {
              const stop = watch(progressWatchers, taskId, catchUp)
              catchUp()
              return stop
            }),
            (stop) => Effect.sync(stop)
          )
        })
    })
  })

/** A layer with a fresh in-memory backend. */
export const layer = (options: ResultTtlOptions = {}): Layer.Layer<ResultBackend, BackendError> =>
  Layer.effect(ResultBackend, make(options))
