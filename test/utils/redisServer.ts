/**
 * A private redis-server on a free port, for tests that stop or restart Redis itself.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

const waitReady = async (proc: ChildProcess) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("redis-server did not start within 10 s")), 10_000)
    proc.stdout!.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("Ready to accept connections")) {
        clearTimeout(timer)
        resolve()
      }
    })
    proc.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)))
  })

/** A private server. `stop` and `start` let a test take Redis away and bring it back on the same port. */
export interface PrivateRedis {
  readonly port: number
  readonly url: string
  readonly stop: Effect.Effect<void>
  readonly start: Effect.Effect<void>
}

/** Starts a private redis-server for the scope; stopped (by its pid) when the scope closes. */
export const privateRedis = (options: { readonly appendOnly?: boolean } = {}) =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const dir = mkdtempSync(join(tmpdir(), "taskiq-redis-"))
    let proc: ChildProcess | undefined
    const start = Effect.promise(async () => {
      proc = spawn("redis-server", [
        "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir,
        "--appendonly", options.appendOnly ? "yes" : "no"
      ], { stdio: ["ignore", "pipe", "inherit"] })
      await waitReady(proc)
    })
    const stop = Effect.promise(async () => {
      const p = proc
      proc = undefined
      if (!p || p.exitCode !== null) return
      await new Promise<void>((resolve) => {
        p.once("exit", () => resolve())
        p.kill("SIGKILL")
      })
    })
    yield* Effect.acquireRelease(start, () => stop.pipe(Effect.andThen(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))))
    return { port, url: `redis://127.0.0.1:${port}/0`, stop, start } satisfies PrivateRedis
  })
