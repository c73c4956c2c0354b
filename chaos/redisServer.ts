/**
 * The chaos run's private redis-server: a free port on 127.0.0.1, AOF on (`appendfsync always`) in a temporary
 * folder, so that a restart on the same port and folder comes back with every acknowledged write.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"

export const freePort = (): Promise<number> =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

export class PrivateRedis {
  private proc: ChildProcess | undefined
  private log = ""
  constructor(readonly port: number, readonly dir: string) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`
  }
  get pid(): number | undefined {
    return this.proc?.pid
  }

  /** Starts redis-server and waits until it accepts connections (after loading the AOF). */
  start(): Promise<void> {
    const proc = spawn("redis-server", [
      "--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", "",
      "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes", "--maxclients", "10000"
    ], { stdio: ["ignore", "pipe", "pipe"] })
    this.proc = proc
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 20 s:\n${this.log}`)), 20_000)
      const onData = (chunk: Buffer) => {
        this.log = (this.log + chunk.toString()).slice(-4000)
        if (this.log.includes("Ready to accept connections")) {
          clearTimeout(timer)
          proc.stdout!.off("data", onData)
          proc.stdout!.resume()
          resolve()
        }
      }
      proc.stdout!.on("data", onData)
      proc.stderr!.on("data", (chunk: Buffer) => (this.log = (this.log + chunk.toString()).slice(-4000)))
      proc.once("exit", (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited (${code ?? signal}):\n${this.log}`))
      })
    })
  }

  /** Stops it with `signal` (SIGTERM: a clean shutdown that fsyncs the AOF) and waits for the exit. */
  stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const p = this.proc
    this.proc = undefined
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return Promise.resolve()
    return new Promise<void>((resolve) => {
      p.once("exit", () => resolve())
      p.kill(signal)
    })
  }

  /** Last resort on exit: synchronous. */
  killNow(): void {
    const p = this.proc
    if (p?.pid !== undefined && p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(p.pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
  }
}
