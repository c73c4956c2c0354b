/**
 * The harness's own Redis connection: server facts, and finding, measuring and deleting a run's keys by
 * prefix with SCAN (never KEYS, never FLUSHDB: the Redis is shared).
 */
import { Redis } from "ioredis"
import { withTimeout } from "./util.js"

/** Escapes the glob characters of a literal prefix for `SCAN MATCH`. */
const globEscape = (s: string): string => s.replace(/[*?[\]\\]/g, "\\$&")

export class RedisAdmin {
  readonly client: Redis

  private constructor(client: Redis) {
    this.client = client
  }

  static async connect(url: string): Promise<RedisAdmin> {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3 })
    client.on("error", () => {}) // reported through the failing command instead
    await withTimeout(client.connect(), 5_000, `connecting to Redis at ${url}`)
    return new RedisAdmin(client)
  }

  async info(section: string): Promise<Record<string, string>> {
    const text = await this.client.info(section)
    const out: Record<string, string> = {}
    for (const line of text.split("\r\n")) {
      const i = line.indexOf(":")
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1)
    }
    return out
  }

  /**
   * Server CPU used so far (user + system, µs) and calls per command: deltas around a run say what the
   * run cost Redis. The Redis is shared, so whatever else runs on it meanwhile is counted too.
   */
  async serverCounters(): Promise<{ readonly cpuMicros: number; readonly calls: Record<string, number> }> {
    const text = (await this.client.call("INFO", "cpu", "commandstats")) as string
    const calls: Record<string, number> = {}
    for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2])
    const seconds = (name: string) => Number(text.match(new RegExp(`^${name}:([\\d.]+)`, "m"))?.[1] ?? 0)
    return { cpuMicros: Math.round((seconds("used_cpu_user") + seconds("used_cpu_sys")) * 1e6), calls }
  }

  async usedMemory(): Promise<number> {
    return Number((await this.info("memory")).used_memory)
  }

  /** Every key starting with `prefix`. */
  async keys(prefix: string): Promise<Array<string>> {
    const out: Array<string> = []
    let cursor = "0"
    do {
      const [next, batch] = await this.client.scan(cursor, "MATCH", `${globEscape(prefix)}*`, "COUNT", 5_000)
      out.push(...batch)
      cursor = next
    } while (cursor !== "0")
    return out
  }

  async countKeys(prefix: string): Promise<number> {
    return (await this.keys(prefix)).length
  }

  /** Sum of `MEMORY USAGE` of these keys, bytes (pipelined by thousands). */
  async memoryUsage(keys: ReadonlyArray<string>): Promise<number> {
    let total = 0
    for (let i = 0; i < keys.length; i += 1_000) {
      const pipeline = this.client.pipeline()
      for (const key of keys.slice(i, i + 1_000)) pipeline.memory("USAGE", key)
      for (const [error, bytes] of (await pipeline.exec()) ?? []) if (error === null) total += Number(bytes ?? 0)
    }
    return total
  }

  /** Deletes every key starting with `prefix` (UNLINK, by thousands); returns how many. */
  async deletePrefix(prefix: string): Promise<number> {
    const keys = await this.keys(prefix)
    for (let i = 0; i < keys.length; i += 1_000) await this.client.unlink(...keys.slice(i, i + 1_000))
    return keys.length
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect())
  }
}
