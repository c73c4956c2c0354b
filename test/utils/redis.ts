/**
 * Test helpers for the real Redis: unique key names per test, and cleanup of exactly those keys.
 * The shared Redis is never flushed.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Redis } from "ioredis"
import type { Broker } from "../../src/Broker.js"
import type { ResultBackend } from "../../src/ResultBackend.js"
import * as Taskiq from "../../src/Taskiq.js"

/** The Redis the tests use (CI may point this at a private server). */
export const redisUrl = process.env.TASKIQ_TEST_REDIS_URL ?? process.env.TASKIQ_REDIS_URL ?? "redis://127.0.0.1:6379/0"

/** A key-name root unique to this test: every key a test makes starts with it. */
export const uniqueName = (label: string): string =>
  `taskiq-test:{${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}}`

/** The names a test's queue uses. */
export const names = (root: string) => ({ queueName: `${root}:q`, resultPrefix: `${root}:r` })

/** A plain client for inspecting Redis from a test, closed with the scope. */
export const rawClient = (url: string = redisUrl) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const c = new Redis(url, { maxRetriesPerRequest: 1 })
      c.on("error", () => {}) // tests that stop Redis expect reconnect noise
      return c
    }),
    (c) => Effect.promise(() => c.quit().catch(() => "OK"))
  )

/** Deletes every key under `root`. */
export const deleteKeys = (root: string, url: string = redisUrl) =>
  Effect.promise(async () => {
    const c = new Redis(url, { maxRetriesPerRequest: 1 })
    try {
      const keys = await c.keys(`${root.replace(/([*?[\]])/g, "\\$1")}*`)
      if (keys.length > 0) await c.del(...keys)
    } finally {
      c.disconnect()
    }
  })

/** A scope finalizer that deletes every key under `root`. */
export const cleanupKeys = (root: string, url: string = redisUrl) => Effect.addFinalizer(() => deleteKeys(root, url))

/** The Redis broker and backend on this test's queue and result prefix; its keys are deleted afterwards. */
export const layerRedis = (root: string, options: Taskiq.RedisOptions = {}): Layer.Layer<Broker | ResultBackend, never> =>
  Layer.scopedDiscard(cleanupKeys(root)).pipe(
    Layer.provideMerge(Taskiq.layerRedis({ url: redisUrl, ...names(root), ...options })),
    Layer.orDie
  )
