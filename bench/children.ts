/**
 * The harness side of worker children: spawn (`node --import tsx <script> <json config>` directly, so
 * the pid we hold is the worker's own and not an npx wrapper's), wait for ready, ask for stats, pause and
 * resume, stop.
 * Every live child is registered, and killed by pid when the harness exits for whatever reason.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import type { ChildMessage, ParentMessage, WorkerStats } from "./ipc.js"
import { withTimeout } from "./util.js"

const repoRoot = fileURLToPath(new URL("..", import.meta.url))
const live = new Set<WorkerChild>()

/** Kills every child still running (synchronous: safe in an `exit` handler). */
export const killAllChildren = (): void => {
  for (const child of live) child.kill()
}
process.on("exit", killAllChildren)

export interface ChildSpec {
  /** The worker script, relative to bench/. */
  readonly script: string
  readonly config: unknown
  /** Shown before the child's output lines. */
  readonly label: string
  /** Extra node flags, e.g. `--expose-gc`. */
  readonly nodeArgs?: ReadonlyArray<string>
}

export class WorkerChild {
  readonly label: string
  readonly pid: number
  /** The latest stats, pushed or asked for. */
  latest: WorkerStats | undefined
  peakRss = 0
  /** Spawn to ready, ms: module loading, connecting, starting the worker. */
  startupMs: number | undefined
  private readonly spawnedAt = performance.now()
  /** Set once the child has exited or reported an error: every wait on it fails with this. */
  failure: string | undefined
  private readonly process: ChildProcess
  private readonly tail: Array<string> = []
  private readonly statsListeners = new Set<(stats: WorkerStats) => void>()
  private readonly replies = new Map<number, (stats: WorkerStats) => void>()
  /** Pauses and resumes not yet answered: they fail at once if the child dies. */
  private readonly acks = new Map<number, { resolve: () => void; reject: (e: Error) => void }>()
  private nextReply = 0
  private readyWaiter: { resolve: () => void; reject: (e: Error) => void } | undefined
  private isReady = false
  private profiled: ((file: string) => void) | undefined
  private readonly exited: Promise<void>

  constructor(spec: ChildSpec) {
    this.label = spec.label
    this.process = spawn(
      process.execPath,
      [...(spec.nodeArgs ?? []), "--import", "tsx", fileURLToPath(new URL(spec.script, import.meta.url)), JSON.stringify(spec.config)],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe", "ipc"], env: process.env }
    )
    if (this.process.pid === undefined) throw new Error(`could not spawn ${spec.script}`)
    this.pid = this.process.pid
    live.add(this)
    for (const stream of [this.process.stdout!, this.process.stderr!]) {
      createInterface({ input: stream }).on("line", (line) => {
        this.tail.push(line)
        if (this.tail.length > 30) this.tail.shift()
        process.stderr.write(`  [${this.label} pid ${this.pid}] ${line}\n`)
      })
    }
    this.process.on("message", (message: ChildMessage) => this.onMessage(message))
    this.exited = new Promise((resolve) => {
      this.process.on("exit", (code, signal) => {
        live.delete(this)
        this.fail(`exited (code ${code}, signal ${signal})`)
        resolve()
      })
    })
    this.process.on("error", (e) => this.fail(`process error: ${e.message}`))
  }

  private onMessage(message: ChildMessage): void {
    if (message.type === "ready") {
      this.isReady = true
      this.startupMs = performance.now() - this.spawnedAt
      this.readyWaiter?.resolve()
    } else if (message.type === "error") {
      this.fail(message.message)
    } else if (message.type === "profiled") {
      this.profiled?.(message.file)
    } else if (message.type === "paused" || message.type === "resumed") {
      this.acks.get(message.reply)?.resolve()
      this.acks.delete(message.reply)
    } else {
      this.latest = message.stats
      if (message.stats.rss > this.peakRss) this.peakRss = message.stats.rss
      for (const listener of this.statsListeners) listener(message.stats)
      if (message.reply !== undefined) {
        this.replies.get(message.reply)?.(message.stats)
        this.replies.delete(message.reply)
      }
    }
  }

  private fail(reason: string): void {
    if (this.failure !== undefined) return
    this.failure = `${this.label} (pid ${this.pid}) ${reason}${this.tail.length ? `; last output:\n${this.tail.join("\n")}` : ""}`
    this.readyWaiter?.reject(new Error(this.failure))
    for (const ack of this.acks.values()) ack.reject(new Error(this.failure))
    this.acks.clear()
  }

  /** Throws if the child has died: called from polling loops so a dead worker fails the run at once. */
  check(): void {
    if (this.failure !== undefined) throw new Error(this.failure)
  }

  ready(timeoutMs: number): Promise<void> {
    if (this.isReady) return Promise.resolve()
    if (this.failure !== undefined) return Promise.reject(new Error(this.failure))
    return withTimeout(
      new Promise<void>((resolve, reject) => (this.readyWaiter = { resolve, reject })),
      timeoutMs,
      `${this.label} (pid ${this.pid}) to start`
    )
  }

  private send(message: ParentMessage): void {
    this.check()
    this.process.send(message)
  }

  /** Fresh stats, asked for over IPC; with `gc`, after a full collection (needs `--expose-gc`). */
  stats(options: { readonly gc?: boolean } = {}, timeoutMs = 5_000): Promise<WorkerStats> {
    const reply = this.nextReply++
    const answer = new Promise<WorkerStats>((resolve) => this.replies.set(reply, resolve))
    this.send({ type: "stats", reply, gc: options.gc === true })
    return withTimeout(answer, timeoutMs, `stats from ${this.label} (pid ${this.pid})`).finally(() => this.replies.delete(reply))
  }

  private request(type: "pause" | "resume", timeoutMs: number): Promise<void> {
    this.check()
    const reply = this.nextReply++
    const answer = new Promise<void>((resolve, reject) => this.acks.set(reply, { resolve, reject }))
    this.send({ type, reply })
    return withTimeout(answer, timeoutMs, `${this.label} (pid ${this.pid}) to ${type}`).finally(() => this.acks.delete(reply))
  }

  /** Stops the worker consuming (the process stays up, warm); resolves once it holds no message. */
  pause(timeoutMs = 15_000): Promise<void> {
    return this.request("pause", timeoutMs)
  }

  /** Lets a paused worker consume again; resolves once it does. */
  resume(timeoutMs = 15_000): Promise<void> {
    return this.request("resume", timeoutMs)
  }

  /** Starts the CPU profiler in the child. */
  startProfile(): void {
    this.send({ type: "profile-start" })
  }

  /** Stops the child's CPU profiler; resolves once it has written `file`. */
  stopProfile(file: string, timeoutMs = 30_000): Promise<string> {
    const written = new Promise<string>((resolve) => (this.profiled = resolve))
    this.send({ type: "profile-stop", file })
    return withTimeout(written, timeoutMs, `the CPU profile of ${this.label} (pid ${this.pid})`)
  }

  /** Called with every stats report until the returned function is called. */
  onStats(listener: (stats: WorkerStats) => void): () => void {
    this.statsListeners.add(listener)
    return () => this.statsListeners.delete(listener)
  }

  /** Asks the child to stop and waits for it to exit; kills it (by pid) if it does not within `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (!live.has(this)) return
    try {
      this.process.send({ type: "stop" } satisfies ParentMessage)
      await withTimeout(this.exited, timeoutMs, `${this.label} (pid ${this.pid}) to exit`)
    } catch (e) {
      this.kill()
      throw e
    }
  }

  kill(): void {
    if (live.has(this)) {
      try {
        process.kill(this.pid, "SIGKILL")
      } catch {
        // Already gone.
      }
      live.delete(this)
    }
  }
}

/** Starts children in parallel and waits until all are ready; on any failure, kills them all. */
export const startChildren = async (specs: ReadonlyArray<ChildSpec>, timeoutMs = 60_000): Promise<Array<WorkerChild>> => {
  const children = specs.map((spec) => new WorkerChild(spec))
  try {
    await Promise.all(children.map((c) => c.ready(timeoutMs)))
    return children
  } catch (e) {
    for (const c of children) c.kill()
    throw e
  }
}

/** Stops children in parallel; the first failure is rethrown after all were stopped or killed. */
export const stopChildren = async (children: ReadonlyArray<WorkerChild>): Promise<void> => {
  const outcomes = await Promise.allSettled(children.map((c) => c.stop()))
  const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected")
  if (failed) throw failed.reason
}
