/**
 * The machine and software versions a run was made with, for results.json and the report header.
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import os from "node:os"
import type { RedisAdmin } from "./redis-admin.js"

const versionOf = (pkg: string): string => {
  try {
    // Read the file directly: not every package exports its package.json.
    const file = new URL(`../node_modules/${pkg}/package.json`, import.meta.url)
    return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version
  } catch {
    return "unknown"
  }
}

/**
 * The commit measured, marked `+dirty` when src/ differs from it (figures then belong to no commit).
 * Outside a git checkout (e.g. an exported copy of a commit), `TASKIQ_BENCH_COMMIT` names it.
 */
const commitOf = (): string => {
  if (process.env.TASKIQ_BENCH_COMMIT) return process.env.TASKIQ_BENCH_COMMIT
  const git = (...args: Array<string>) =>
    execFileSync("git", args, { cwd: new URL("..", import.meta.url), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  try {
    return `${git("rev-parse", "--short", "HEAD")}${git("status", "--porcelain", "src") === "" ? "" : "+dirty"}`
  } catch {
    return "unknown"
  }
}

export const describeMachine = async (admin: RedisAdmin) => {
  const cpus = os.cpus()
  const server = await admin.info("server")
  return {
    machine: {
      cpu: cpus[0]?.model.trim() ?? "unknown",
      cores: cpus.length,
      memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
      os: `${os.type()} ${os.release()} ${os.arch()}`
    },
    versions: {
      node: process.version,
      redis: server.redis_version ?? "unknown",
      effect: versionOf("effect"),
      bullmq: versionOf("bullmq"),
      ioredis: versionOf("ioredis"),
      tsx: versionOf("tsx"),
      "effect-taskiq": (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version,
      commit: commitOf()
    }
  }
}
