/**
 * The `--workers N` supervisor: N worker processes running this same command line, each restarted with
 * backoff when it dies. Interruption (SIGINT/SIGTERM under `NodeRuntime.runMain`) sends each child SIGTERM
 * and waits for it to drain; a second signal while draining kills them. Children talk back over an IPC
 * channel: "ready" once their layers are built; and a child whose parent disappears shuts itself down.
 */
import { type ChildProcess, fork } from "node:child_process"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { CliError, ExitCode } from "../cli/CliError.js"

/** The environment variable that makes a process a supervised worker (its value: the worker's number). */
export const childEnv = "TASKIQ_WORKER_PROCESS"

const readyMessage = "taskiq/worker-ready"

/** How to start a child: the same script and arguments as this process. */
export interface ChildCommand {
  readonly script: string
  readonly args: ReadonlyArray<string>
  readonly execArgv: ReadonlyArray<string>
}

/** Supervisor settings. */
export interface SupervisorOptions {
  readonly workers: number
  /** How long a child may drain after SIGTERM before it is killed (its shutdown timeout plus slack). */
  readonly stopTimeout: Duration.Duration
  readonly command: ChildCommand
  /** First restart delay (doubles on each quick death, up to `maxRestartDelay`). */
  readonly restartDelay?: Duration.DurationInput | undefined
  readonly maxRestartDelay?: Duration.DurationInput | undefined
}

interface ChildExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly error?: Error | undefined
}

interface Child {
  readonly index: number
  readonly process: ChildProcess
  readonly exited: Promise<ChildExit>
  readonly startedAt: number
  ready: boolean
}

const describeExit = (e: ChildExit) =>
  e.error !== undefined
    ? `could not be started: ${e.error.message}`
    : e.signal !== null
    ? `was killed by ${e.signal}`
    : `exited with code ${e.code}`

/** This process's worker number when it is a supervised child, taken out of the environment; else undefined. */
export const takeChildIndex = (): number | undefined => {
  const value = process.env[childEnv]
  if (value === undefined) return undefined
  delete process.env[childEnv] // the task code's own child processes must not think they are workers
  const index = Number(value)
  return Number.isInteger(index) && index > 0 ? index : undefined
}

/**
 * In a supervised child: repeated signals are ignored (a terminal's Ctrl-C reaches the whole process group
 * and the supervisor forwards SIGTERM as well: the first one drains, the supervisor kills if it must), and a
 * lost parent (its IPC channel closes) is treated as SIGTERM.
 */
export const setUpChild = (): void => {
  const ignore = () => {}
  process.on("SIGINT", ignore)
  process.on("SIGTERM", ignore)
  process.once("disconnect", () => process.kill(process.pid, "SIGTERM"))
  process.channel?.unref()
}

/** In a supervised child: tells the supervisor the worker started. */
export const notifyReady = (): void => {
  if (process.send !== undefined && process.connected) process.send({ _tag: readyMessage }, undefined, {}, () => {})
}

/** Runs and restarts the workers until interrupted; fails only when workers cannot start at all. */
export const supervise = (options: SupervisorOptions): Effect.Effect<void, CliError> =>
  Effect.suspend(() => {
    const live = new Set<ChildProcess>()
    let everReady = false
    let unclean = 0
    let forcing = false
    const baseDelay = Duration.toMillis(options.restartDelay ?? "500 millis")
    const maxDelay = Duration.toMillis(options.maxRestartDelay ?? "30 seconds")

    // A second SIGINT/SIGTERM while the children drain: kill them (their messages are reclaimed by lease).
    const force = () => {
      if (forcing) return
      forcing = true
      process.stderr.write(`taskiq: second signal: killing ${live.size} worker processes\n`)
      for (const p of live) p.kill("SIGKILL")
    }
    let stopping = false
    const startStopping = Effect.suspend(() => {
      if (stopping) return Effect.void
      stopping = true
      process.on("SIGINT", force)
      process.on("SIGTERM", force)
      return Effect.logInfo(
        `stopping ${live.size} worker processes (SIGTERM; they drain, then exit); a second signal kills them`
      )
    })

    const spawnChild = (index: number) =>
      Effect.sync((): Child => {
        const proc = fork(options.command.script, [...options.command.args], {
          execArgv: [...options.command.execArgv],
          env: { ...process.env, [childEnv]: String(index) },
          stdio: ["ignore", "inherit", "inherit", "ipc"]
        })
        live.add(proc)
        const exited = new Promise<ChildExit>((resolve) => {
          proc.once("exit", (code, signal) => resolve({ code, signal }))
          // Only a failed spawn ends a child without an exit event (a failed kill is an error event too).
          proc.on("error", (error) => {
            if (proc.pid === undefined) resolve({ code: null, signal: null, error })
          })
        }).finally(() => live.delete(proc))
        const child: Child = { index, process: proc, exited, startedAt: Date.now(), ready: false }
        proc.on("message", (m: unknown) => {
          if (typeof m === "object" && m !== null && (m as { _tag?: unknown })._tag === readyMessage) {
            child.ready = true
            everReady = true
          }
        })
        return child
      })

    // Shutdown: SIGTERM, wait for the drain, kill past the stop timeout.
    const terminate = (child: Child) =>
      Effect.promise(async () => {
        child.process.kill("SIGTERM")
        let timer: NodeJS.Timeout | undefined
        const late = new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), Duration.toMillis(options.stopTimeout))
        })
        const drained = await Promise.race([child.exited, late])
        clearTimeout(timer)
        if (drained !== undefined) return { exit: drained, killed: false }
        child.process.kill("SIGKILL")
        return { exit: await child.exited, killed: true }
      })

    const stopChild = (child: Child) =>
      startStopping.pipe(
        Effect.zipRight(terminate(child)),
        Effect.flatMap(({ exit, killed }) => {
          // A child stopped before it was ready had taken no work: a signal that ended its start-up is no harm.
          const clean = !killed &&
            (exit.code === ExitCode.ok || !child.ready && exit.signal !== null && exit.signal !== "SIGKILL")
          if (clean) return Effect.logInfo(`worker ${child.index} (pid ${child.process.pid}) stopped`)
          unclean++
          return Effect.logWarning(
            `worker ${child.index} (pid ${child.process.pid}) ${
              killed ? `did not stop within ${Duration.format(options.stopTimeout)} and ` : ""
            }${describeExit(exit)}`
          )
        })
      )

    // One child's life: started, awaited; if the supervisor is interrupted meanwhile, stopped.
    const runChild = (index: number) =>
      Effect.acquireRelease(spawnChild(index), (child, exit) =>
        Exit.isInterrupted(exit) && child.process.exitCode === null && child.process.signalCode === null
          ? stopChild(child)
          : Effect.void).pipe(
          Effect.tap((child) => Effect.logInfo(`worker ${index} started (pid ${child.process.pid})`)),
          Effect.flatMap((child) => Effect.map(Effect.promise(() => child.exited), (exit) => ({ child, exit }))),
          Effect.scoped
        )

    const slot = (index: number) =>
      Effect.gen(function*() {
        let failures = 0
        for (;;) {
          const { child, exit } = yield* runChild(index)
          if (exit.code === ExitCode.config && !everReady) {
            return yield* new CliError({
              reason: "WorkerStartFailed",
              detail: `worker ${index} could not start (its error is above); not restarting`
            })
          }
          if (Date.now() - child.startedAt > maxDelay) failures = 0
          const delay = Math.min(maxDelay, baseDelay * 2 ** failures)
          failures++
          yield* Effect.logWarning(
            `worker ${index} (pid ${child.process.pid}) ${describeExit(exit)}; restarting in ${Duration.format(Duration.millis(delay))}`
          )
          yield* Effect.sleep(Duration.millis(delay))
        }
      })

    return Effect.logInfo(`supervisor (pid ${process.pid}) starting ${options.workers} worker processes`).pipe(
      Effect.zipRight(
        Effect.forEach(Array.from({ length: options.workers }, (_, i) => i + 1), slot, {
          concurrency: "unbounded",
          discard: true
        })
      ),
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          if (unclean > 0) process.exitCode = ExitCode.failure
        }).pipe(Effect.zipRight(Effect.logInfo(`all worker processes stopped${unclean > 0 ? ` (${unclean} not cleanly)` : ""}`)))
      ),
      Effect.ensuring(Effect.sync(() => {
        process.removeListener("SIGINT", force)
        process.removeListener("SIGTERM", force)
      }))
    )
  })
