/**
 * The chaos harness's task. Each execution records itself in Redis with its own ioredis client (from
 * `CHAOS_REDIS_URL`), in one Lua script keyed by a per-execution token, so that a command resent by ioredis
 * after a killed connection is not counted twice:
 *   SADD <run>:execs "<id>|<pid>|<ms>|<token>"   (one member per execution: which worker process ran it, when)
 *   SADD <run>:ran <id>                      (the task ran at least once)
 *   INCR <run>:runs:<id>                     (how many times it ran)
 * It then sleeps `ms` (so that tasks are in flight when a worker is killed) and returns its id.
 */
import { randomBytes } from "node:crypto"
import * as Effect from "effect/Effect"
import { Redis } from "ioredis"
import * as Task from "../src/Task.js"

const recordLua = `
if redis.call('SADD', KEYS[1], ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[3]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  return redis.call('INCR', KEYS[3])
end
return -1`

let client: Redis | undefined
const redis = (): Redis => {
  if (client === undefined) {
    const url = process.env.CHAOS_REDIS_URL
    if (url === undefined) throw new Error("CHAOS_REDIS_URL is not set")
    // Waits through connection kills and a Redis restart instead of failing the task.
    client = new Redis(url, { maxRetriesPerRequest: null, connectionName: "chaos:task" })
    client.on("error", () => {})
  }
  return client
}

/** Records one execution of task `id` of chaos run `run`, sleeps `ms`, returns `id`. */
export const record = Task.make("chaos.record", (run: string, id: string, ms: number) =>
  Effect.promise(() =>
    redis().eval(recordLua, 3, `${run}:execs`, `${run}:ran`, `${run}:runs:${id}`, id, `${process.pid}|${Date.now()}`, randomBytes(6).toString("hex"))
  ).pipe(
    Effect.zipRight(ms > 0 ? Effect.sleep(ms) : Effect.void),
    Effect.as(id)
  ))
