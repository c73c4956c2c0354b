/**
 * An in-memory result backend with the Redis backend's semantics (JSON round trip, TTL, pushed waits).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { BackendError, encodeResult, resolveTtlMs, ResultBackend, type ResultTtlOptions } from "../ResultBackend.js"
import * as TaskResult from "../TaskResult.js"

/** Builds an in-memory backend; results are stored as JSON so encoding problems show up here too. */
export const make = (options: ResultTtlOptions = {}) =>
  Effect.gen(function*() {
    const ttl = resolveTtlMs(options)
    if (typeof ttl === "string") return yield* new BackendError({ reason: "Config", detail: ttl })
    const store = new Map<string, { json: string; expiresAt: number }>()
    const waiters = new Map<string, Set<() => void>>()

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

    const set = (taskId: string, result: TaskResult.TaskResult) =>
      Effect.map(encodeResult(taskId, result), (json) => {
        store.set(taskId, { json, expiresAt: Date.now() + ttl })
        const listeners = waiters.get(taskId)
        if (listeners) for (const w of listeners) w()
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
      delete: (taskId) => Effect.sync(() => void store.delete(taskId))
    })
  })

/** A layer with a fresh in-memory backend. */
export const layer = (options: ResultTtlOptions = {}): Layer.Layer<ResultBackend, BackendError> =>
  Layer.effect(ResultBackend, make(options))
