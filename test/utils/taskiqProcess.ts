/**
 * Real `taskiq` command processes for tests (`node bin/taskiq.mjs …` against the test Redis). Every
 * process is SIGKILLed by pid when the scope closes, a supervisor's children too.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { join, resolve } from "node:path"
import * as Effect from "effect/Effect"
import { redisUrl } from "./redis.js"

export const repoRoot = resolve(import.meta.dirname, "../..")

// Process start-up (tsx, effect, the app) takes seconds, more on a loaded machine: waits are generous.
export const startupMs = 60_000

/**
 * The environment of a child process: this one's, without the developer's own TASKIQ_* settings (an exported
 * TASKIQ_RESULT_PREFIX would send a child's results where the test does not look), plus `extra`.
 */
export const childEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("TASKIQ_")) env[name] = value
  return { ...env, TASKIQ_TEST_REDIS_URL: redisUrl, ...extra }
}

export const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "")

export interface CliProcess {
  readonly process: ChildProcess
  /** Everything it (and its children) printed so far, stdout and stderr. */
  readonly output: () => string
  /** What it printed on stdout only. */
  readonly stdout: () => string
  /** Waits until `pattern` (global) matched `count` times; fails early if the process exits. */
  readonly waitFor: (pattern: RegExp, count?: number, timeoutMs?: number) => Effect.Effect<Array<RegExpMatchArray>>
  /** Its exit: the code, or the signal that killed it. */
  readonly exit: (timeoutMs?: number) => Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** The worker processes a supervisor reported starting. */
  readonly childPids: () => Array<number>
}

export const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export const childPids = (output: string) => [...output.matchAll(/worker \d+ started \(pid (\d+)\)/g)].map((m) => Number(m[1]))

/** Runs `node bin/taskiq.mjs <args>`; the process and the workers it started are SIGKILLed with the scope. */
export const taskiq = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.sync((): CliProcess => {
      const proc = spawn(process.execPath, [join(repoRoot, "bin/taskiq.mjs"), ...args], {
        cwd: repoRoot,
        env: childEnv(env),
        stdio: ["ignore", "pipe", "pipe"]
      })
      let out = ""
      let stdout = ""
      proc.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        stdout += chunk.toString()
      })
      proc.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()))
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        proc.once("exit", (code, signal) => resolve({ code, signal }))
      )
      // The exit event can come before the last output: settle both.
      const closed = new Promise<void>((resolve) => proc.once("close", () => resolve()))
      let done = false
      void exited.then(() => (done = true))
      const output = () => stripAnsi(out)
      const waitFor = (pattern: RegExp, count = 1, timeoutMs = startupMs) =>
        Effect.promise(async () => {
          const until = Date.now() + timeoutMs
          for (;;) {
            const matches = [...output().matchAll(pattern)]
            if (matches.length >= count) return matches
            if (done) await closed
            if (done && [...output().matchAll(pattern)].length < count) {
              throw new Error(`taskiq exited before printing ${pattern} ×${count}:\n${output()}`)
            }
            if (Date.now() > until) throw new Error(`no ${pattern} ×${count} within ${timeoutMs} ms:\n${output()}`)
            await new Promise((r) => setTimeout(r, 50))
          }
        })
      const exit = (timeoutMs = startupMs) =>
        Effect.promise(async () => {
          let timer: NodeJS.Timeout | undefined
          const late = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`taskiq did not exit within ${timeoutMs} ms:\n${output()}`)), timeoutMs)
          })
          try {
            const result = await Promise.race([exited, late])
            await closed
            return result
          } finally {
            clearTimeout(timer)
          }
        })
      return { process: proc, output, stdout: () => stripAnsi(stdout), waitFor, exit, childPids: () => childPids(output()) }
    }),
    (p) =>
      Effect.sync(() => {
        for (const pid of [p.process.pid!, ...p.childPids()]) if (isAlive(pid)) process.kill(pid, "SIGKILL")
      })
  )

