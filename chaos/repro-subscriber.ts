/**
 * A focused reproduction of the one failure the chaos run finds (see docs/RELIABILITY.md): callers waiting with
 * `waitResult` fail with `BackendError` (reason "Wait") instead of waiting on, when the result backend's
 * subscriber connection is killed while new waiters keep subscribing.
 *
 *   npx tsx chaos/repro-subscriber.ts
 *
 * Starts a private redis-server, adds 500 waiters a second, 20 at a time (long timeouts), for 8 s while it kills the pub/sub
 * connections (`CLIENT KILL TYPE pubsub`) every 300 ms, then stores every result. Every waiter should get
 * its result; the script prints how many failed, and how, and exits 1 if any did.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Redis } from "ioredis"
import { ResultBackend } from "../src/ResultBackend.js"
import * as TaskHandle from "../src/TaskHandle.js"
import * as TaskResult from "../src/TaskResult.js"
import * as Taskiq from "../src/Taskiq.js"
import { freePort, PrivateRedis } from "./redisServer.js"

const dir = mkdtempSync(join(tmpdir(), "taskiq-repro-"))
const redis = new PrivateRedis(await freePort(), dir)
let admin: Redis | undefined
const cleanup = () => {
  admin?.disconnect()
  redis.killNow()
  rmSync(dir, { recursive: true, force: true })
}
process.once("exit", cleanup)
process.once("SIGINT", () => process.exit(130))

await redis.start()
admin = new Redis(redis.url, { maxRetriesPerRequest: null })
admin.on("error", () => {})
const failures = new Map<string, number>()
let ok = 0
let kills = 0

const program = Effect.scoped(Effect.gen(function*() {
  const ctx = yield* Layer.build(Taskiq.layerRedis({ url: redis.url, queueName: "repro:queue", resultPrefix: "repro" }))
  const backend = Context.get(ctx, ResultBackend)
  const ids = Array.from({ length: 4000 }, (_, i) => `repro${String(i).padStart(6, "0")}`)
  const killer = setInterval(() => {
    kills++
    void admin!.call("CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes")
  }, 300)
  const waiters = yield* Effect.forEach(ids, (id, i) =>
    Effect.sleep(Math.floor(i / 20) * 40).pipe(
      Effect.zipRight(TaskHandle.make(id, "repro", "repro:queue").waitResult({ timeout: "60 seconds" })),
      Effect.match({
        onSuccess: () => void ok++,
        onFailure: (e) => {
          const kind = `${e._tag}: ${e.message.replace(/task \w+/, "task …").replace(/\(repro\d+\)/, "(…)")}`
          failures.set(kind, (failures.get(kind) ?? 0) + 1)
        }
      }),
      Effect.provide(ctx),
      Effect.fork
    ))
  yield* Effect.sleep("9 seconds")
  clearInterval(killer)
  yield* Effect.forEach(ids, (id) => backend.set(id, TaskResult.succeed(id, 0)), { concurrency: 50 })
  yield* Effect.forEach(waiters, (f) => f.await)
}))

await Effect.runPromise(program)
console.log(`4000 waiters, ${kills} pub/sub connection kills: ${ok} got their result, ${4000 - ok} failed`)
for (const [kind, n] of failures) console.log(`  ${n}× ${kind}`)
process.exit(ok === 4000 ? 0 : 1)
