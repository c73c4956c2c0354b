/**
 * The child side of a worker process: reads its JSON config from argv, starts the worker, then talks to
 * the harness over IPC (ready, periodic stats, stats on request, CPU profile, pause and resume, stop). It
 * exits when the harness goes away, so a crashed or killed harness never leaves a worker consuming a queue.
 */
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import type { ChildMessage, ParentMessage, WorkerStats } from "./ipc.js"
import { statsIntervalMs } from "./ipc.js"

export interface RunningWorker {
  /** Tasks finished so far. */
  readonly done: () => number
  /** Stops consuming, once what it read is finished and acknowledged (or handed back); the process stays up. */
  readonly pause: () => Promise<void>
  /** Consumes again after `pause`; resolves once it does. */
  readonly resume: () => Promise<void>
  /** Stops consuming and closes connections (paused or not). */
  readonly stop: () => Promise<void>
}

const stopTimeoutMs = 10_000

const send = (message: ChildMessage): void => {
  if (process.connected) process.send!(message)
}

const fail = (what: string, e: unknown): void => {
  const message = `${what}: ${e instanceof Error ? e.stack ?? e.message : String(e)}`
  console.error(message)
  send({ type: "error", message })
  // Let the IPC message go out before exiting.
  setTimeout(() => process.exit(1), 50)
}

const statsOf = (worker: RunningWorker): WorkerStats => {
  const memory = process.memoryUsage()
  const cpu = process.cpuUsage()
  return { rss: memory.rss, heapUsed: memory.heapUsed, done: worker.done(), cpuMicros: cpu.user + cpu.system }
}

/** The V8 CPU profiler of this process, as `node --cpu-prof` runs it, but started and stopped on request. */
const profiler = () => {
  let session: Session | undefined
  return {
    start: () => {
      session = new Session()
      session.connect()
      session.post("Profiler.enable").then(() => session!.post("Profiler.start")).catch((e) => fail("profiler", e))
    },
    stop: (file: string) => {
      session?.post("Profiler.stop").then(({ profile }) => {
        writeFileSync(file, JSON.stringify(profile))
        session!.disconnect()
        send({ type: "profiled", file })
      }).catch((e) => fail("profiler", e))
    }
  }
}

const stopAndExit = (worker: RunningWorker): void => {
  const timer = setTimeout(() => {
    console.error(`worker did not stop within ${stopTimeoutMs} ms; exiting anyway`)
    process.exit(1)
  }, stopTimeoutMs)
  // A normal stop (not a kill) lets the worker hand back what it holds and close its connections.
  worker.stop().then(
    () => {
      clearTimeout(timer)
      process.exit(0)
    },
    (e) => fail("stopping the worker failed", e)
  )
}

/** Runs a worker child; `start` connects and starts consuming, and resolves once the worker is ready. */
export const runChild = <Config>(start: (config: Config) => Promise<RunningWorker>): void => {
  if (process.send === undefined) {
    console.error("this is a benchmark worker child: start it through `npm run bench`")
    process.exit(2)
  }
  process.on("disconnect", () => process.exit(1))
  process.on("uncaughtException", (e) => fail("uncaught exception", e))
  process.on("unhandledRejection", (e) => fail("unhandled rejection", e))

  const config = JSON.parse(process.argv[2] ?? "null") as Config
  start(config).then(
    (worker) => {
      setInterval(() => send({ type: "stats", stats: statsOf(worker) }), statsIntervalMs)
      const cpu = profiler()
      let stopping = false
      // Pause, resume and stop one after another, in the order asked: a resume never overtakes the pause before it.
      let queue: Promise<void> = Promise.resolve()
      const inTurn = (what: string, f: () => Promise<void>, then: () => void) => {
        queue = queue.then(f).then(then, (e) => fail(`${what} failed`, e))
      }
      process.on("message", (message: ParentMessage) => {
        switch (message.type) {
          case "stats": {
            const gc = (globalThis as { gc?: () => void }).gc
            if (message.gc === true && gc !== undefined) gc()
            return send({ type: "stats", stats: statsOf(worker), reply: message.reply })
          }
          case "profile-start":
            return cpu.start()
          case "profile-stop":
            return cpu.stop(message.file)
          case "pause":
            return inTurn("pausing the worker", worker.pause, () => send({ type: "paused", reply: message.reply }))
          case "resume":
            return inTurn("resuming the worker", worker.resume, () => send({ type: "resumed", reply: message.reply }))
          case "stop":
            if (!stopping) inTurn("stopping the worker", async () => stopAndExit(worker), () => undefined)
            stopping = true
        }
      })
      send({ type: "ready" })
    },
    (e) => fail("the worker did not start", e)
  )
}
