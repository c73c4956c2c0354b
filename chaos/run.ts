/**
 * `npm run chaos [-- --quick] [--tasks N] [--concurrency N] [--rate N] [--seed N]`
 *
 * Runs producers (this process, through the library's producer API) and 3 worker processes (the real
 * `node bin/taskiq.mjs worker chaos/app.ts:app --workers 1`) against a private redis-server it starts on a free
 * port (AOF on, in a temporary folder), over N tasks, while it
 *   - SIGKILLs a random worker every few seconds and starts a new one,
 *   - kills Redis client connections (`CLIENT KILL TYPE normal`, and every other time `TYPE pubsub`) from its
 *     own admin connection (`SKIPME yes`),
 *   - restarts Redis once (SIGTERM, then a new redis-server on the same port and folder: the AOF brings the data
 *     back) when 40 % of the tasks are done.
 * Then it proves from what the tasks recorded in Redis (chaos/tasks.ts) and from the result keys: every task's
 * result is stored and right (0 lost), every task ran at least once, and which tasks ran more than once and
 * whether a SIGKILLed worker explains it. Prints a summary table; exits 1 if anything was lost, not run, wrong,
 * or a waiting caller did not get its result. Every process it started is killed by pid on the way out (also
 * on failure and SIGINT), and the temporary folder is deleted. Only 127.0.0.1 is used; the shared Redis on
 * port 6379 is never touched.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schedule from "effect/Schedule"
import { Redis } from "ioredis"
import * as Taskiq from "../src/Taskiq.js"
import { freePort, PrivateRedis } from "./redisServer.js"
import { record } from "./tasks.js"

// ── settings ────────────────────────────────────────────────────────────────────────────────────────────
const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(`--${name}`)
const option = (name: string, fallback: number): number => {
  const i = argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(argv[i + 1])
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a number`)
  return v
}
const quick = flag("quick")
const settings = {
  mode: quick ? "quick" : "full",
  tasks: option("tasks", quick ? 2_000 : 20_000),
  workers: 3,
  concurrency: option("concurrency", 200), // tasks submitted and awaited at once
  rate: option("rate", quick ? 60 : 250), // submissions per second at most (0: no limit); spreads the run over the chaos
  maxTaskMs: option("task-ms", 30), // each task sleeps 0..maxTaskMs ms, so some are in flight at every kill
  killEveryMs: option("kill-every", quick ? 2_000 : 3_000),
  connKillEveryMs: option("conn-kill-every", quick ? 3_000 : 4_000),
  restartAt: 0.4, // fraction of tasks done when Redis is restarted
  redisDownMs: option("redis-down", 1_500),
  leaseMs: option("lease", 2_000),
  waitTimeoutMs: option("wait-timeout", quick ? 120_000 : 300_000),
  seed: option("seed", Date.now() % 1_000_000)
}

// A small seeded PRNG, so a run's choices (victims, task durations) can be replayed with --seed.
let seedState = settings.seed >>> 0 || 1
const random = () => {
  seedState ^= seedState << 13
  seedState ^= seedState >>> 17
  seedState ^= seedState << 5
  return (seedState >>> 0) / 4294967296
}

const repoRoot = resolve(import.meta.dirname, "..")
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const now = () => Date.now()
const log = (line: string) => console.log(`[chaos ${((now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`)
const t0 = now()

// ── state ───────────────────────────────────────────────────────────────────────────────────────────────
const runId = `chaos-${randomBytes(4).toString("hex")}`
const queueName = `${runId}:queue`
const resultPrefix = `${runId}:result`
const dir = mkdtempSync(join(tmpdir(), "taskiq-chaos-"))
const redisDir = join(dir, "redis")
let redis: PrivateRedis | undefined
let admin: Redis | undefined

interface WorkerProc {
  readonly n: number
  readonly proc: ChildProcess
  readonly pid: number
  readonly logFile: string
  readonly startedAt: number
  killedByUs: boolean
  exited: boolean
  /** When it logged "consuming" (it reads the queue), if it did. */
  readyAt: number | undefined
}
const workers: Array<WorkerProc> = []
/** When the harness SIGKILLed each worker (pid → ms). */
const killedAt = new Map<number, number>()
// A run counts as "in flight at a kill" when its worker was SIGKILLed at most this long after the run started.
const inFlightWindowMs = 5_000
const unexpectedExits: Array<{ pid: number; code: number | null; signal: string | null; at: number }> = []
let stopping = false
const stats = {
  workerKills: 0,
  workerStarts: 0,
  connKillRounds: 0,
  connectionsKilled: 0,
  redisRestarts: 0,
  redisDownMs: 0,
  redisDownAt: [] as Array<number>,
  submitRetries: 0,
  submitted: 0,
  done: 0,
  waitOk: 0,
  waitFailures: [] as Array<string>
}

// ── workers ─────────────────────────────────────────────────────────────────────────────────────────────
const startWorker = (): WorkerProc => {
  const n = ++stats.workerStarts
  const logFile = join(dir, `worker-${n}.log`)
  const fd = openSync(logFile, "a")
  const proc = spawn(process.execPath, [join(repoRoot, "bin/taskiq.mjs"), "worker", "chaos/app.ts:app", "--workers", "1"], {
    cwd: repoRoot,
    env: {
      ...process.env,
      CHAOS_REDIS_URL: redis!.url,
      CHAOS_QUEUE: queueName,
      CHAOS_PREFIX: resultPrefix,
      CHAOS_LEASE_MS: String(settings.leaseMs)
    },
    stdio: ["ignore", fd, fd]
  })
  closeSync(fd)
  const w: WorkerProc = { n, proc, pid: proc.pid!, logFile, startedAt: now(), killedByUs: false, exited: false, readyAt: undefined }
  workers.push(w)
  proc.once("exit", (code, signal) => {
    w.exited = true
    if (w.killedByUs || stopping) return
    unexpectedExits.push({ pid: w.pid, code, signal, at: now() })
    log(`worker ${n} (pid ${w.pid}) exited on its own (${code ?? signal}); starting another`)
    startWorker()
  })
  return w
}
const live = () => workers.filter((w) => !w.exited && !w.killedByUs)
const workerLog = (w: WorkerProc) => {
  try {
    return readFileSync(w.logFile, "utf8")
  } catch {
    return ""
  }
}
const waitConsuming = async (ws: ReadonlyArray<WorkerProc>, timeoutMs = 90_000) => {
  const until = now() + timeoutMs
  for (;;) {
    const missing = ws.filter((w) => !workerLog(w).includes("consuming"))
    if (missing.length === 0) return
    if (missing.some((w) => w.exited)) throw new Error(`a worker exited before consuming:\n${missing.map(workerLog).join("\n")}`)
    if (now() > until) throw new Error(`workers not consuming within ${timeoutMs} ms:\n${missing.map(workerLog).join("\n")}`)
    await sleep(100)
  }
}
const isReady = (w: WorkerProc): boolean => {
  if (w.readyAt === undefined && workerLog(w).includes("consuming")) w.readyAt = now()
  return w.readyAt !== undefined
}
// Only a worker that is consuming is killed, and only while another one is consuming too: worker processes
// take seconds to start (tsx, effect, the app), and a run where every worker dies before it reads proves nothing.
const killRandomWorker = () => {
  const candidates = live().filter(isReady)
  if (candidates.length < 2) return
  const victim = candidates[Math.floor(random() * candidates.length)]!
  victim.killedByUs = true
  killedAt.set(victim.pid, now())
  try {
    process.kill(victim.pid, "SIGKILL")
  } catch {
    // it died on its own meanwhile
  }
  stats.workerKills++
  const next = startWorker()
  log(`SIGKILL worker ${victim.n} (pid ${victim.pid}); started worker ${next.n} (pid ${next.pid})`)
}

// ── Redis chaos ─────────────────────────────────────────────────────────────────────────────────────────
let restarting: Promise<void> | undefined
const killConnections = async () => {
  if (restarting !== undefined || admin === undefined) return
  const types = stats.connKillRounds % 2 === 1 ? ["normal", "pubsub"] : ["normal"]
  stats.connKillRounds++
  let killed = 0
  for (const type of types) {
    try {
      killed += Number(await admin.call("CLIENT", "KILL", "TYPE", type, "SKIPME", "yes"))
    } catch (e) {
      log(`CLIENT KILL TYPE ${type} failed: ${(e as Error).message}`)
    }
  }
  stats.connectionsKilled += killed
  log(`CLIENT KILL TYPE ${types.join("+")}: ${killed} connections`)
}
const restartRedis = () =>
  (restarting ??= (async () => {
    log("restarting Redis: SIGTERM (AOF fsynced on shutdown)")
    const down = now()
    stats.redisDownAt.push(down)
    await redis!.stop("SIGTERM")
    await sleep(settings.redisDownMs)
    await redis!.start()
    stats.redisDownMs = now() - down
    stats.redisRestarts++
    log(`Redis is back on port ${redis!.port} after ${stats.redisDownMs} ms`)
  })().finally(() => (restarting = undefined)))

// ── cleanup ─────────────────────────────────────────────────────────────────────────────────────────────
let cleanedUp = false
const cleanupSync = () => {
  if (cleanedUp) return
  cleanedUp = true
  stopping = true
  for (const w of workers) {
    if (!w.exited) {
      try {
        process.kill(w.pid, "SIGKILL")
      } catch {
        // gone
      }
    }
  }
  admin?.disconnect()
  redis?.killNow()
  rmSync(dir, { recursive: true, force: true })
}
process.once("exit", cleanupSync)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping every process this run started`)
    cleanupSync()
    process.exit(130)
  })
}

// ── the run ─────────────────────────────────────────────────────────────────────────────────────────────
const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}
const chunks = <A>(xs: ReadonlyArray<A>, n: number): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n))
  return out
}

const main = async (): Promise<number> => {
  console.log(`chaos run ${runId}: ${JSON.stringify(settings)}`)
  const port = await freePort()
  redis = new PrivateRedis(port, redisDir)
  mkdirSync(redisDir)
  await redis.start()
  log(`private redis-server (pid ${redis.pid}) on 127.0.0.1:${port}, AOF in ${redisDir}`)
  admin = new Redis(redis.url, { maxRetriesPerRequest: null, connectionName: "chaos:admin" })
  admin.on("error", () => {})

  const initial = Array.from({ length: settings.workers }, startWorker)
  await waitConsuming(initial)
  for (const w of initial) isReady(w)
  log(`${settings.workers} workers consuming: pids ${initial.map((w) => w.pid).join(", ")}`)

  const runtime = ManagedRuntime.make(Taskiq.layerRedis({ url: redis.url, queueName, resultPrefix }))
  const taskIds: Array<string | undefined> = new Array(settings.tasks)
  const durations = Array.from({ length: settings.tasks }, () => Math.floor(random() * (settings.maxTaskMs + 1)))

  const started = now()
  const killTimer = setInterval(() => restarting === undefined && killRandomWorker(), settings.killEveryMs)
  const connTimer = setInterval(() => void killConnections(), settings.connKillEveryMs)
  let lastDone = 0
  let lastAt = started
  const progressTimer = setInterval(() => {
    const rate = (stats.done - lastDone) / ((now() - lastAt) / 1000)
    lastDone = stats.done
    lastAt = now()
    for (const w of live()) isReady(w)
    log(`${stats.done}/${settings.tasks} done (${rate.toFixed(0)}/s), ${stats.submitted} submitted, ${live().filter(isReady).length}/${live().length} workers consuming`)
    if (stats.redisRestarts === 0 && stats.done >= settings.restartAt * settings.tasks) void restartRedis()
  }, quick ? 1_000 : 2_000)

  const one = (i: number) =>
    Effect.gen(function*() {
      if (settings.rate > 0) {
        const due = started + (i * 1000) / settings.rate
        if (due > now()) yield* Effect.sleep(due - now())
      }
      const handle = yield* record.kiq(runId, String(i), durations[i]!).pipe(
        Effect.tapError(() => Effect.sync(() => stats.submitRetries++)),
        Effect.retry(Schedule.spaced("250 millis").pipe(Schedule.intersect(Schedule.recurs(120))))
      )
      taskIds[i] = handle.taskId
      stats.submitted++
      yield* handle.waitResult({ timeout: settings.waitTimeoutMs }).pipe(
        Effect.matchEffect({
          onSuccess: (r) =>
            Effect.sync(() => {
              if (!r.isErr && r.returnValue === String(i)) stats.waitOk++
              else stats.waitFailures.push(`task ${i}: wrong result ${JSON.stringify(r).slice(0, 200)}`)
            }),
          onFailure: (e) =>
            Effect.sync(() => stats.waitFailures.push(`task ${i} at ${((now() - t0) / 1000).toFixed(1)}s: ${e._tag}: ${e.message}`))
        })
      )
      stats.done++
    }).pipe(
      Effect.catchAll((e) =>
        Effect.sync(() => {
          stats.waitFailures.push(`task ${i}: never submitted: ${e._tag}: ${e.message}`)
          stats.done++
        })
      )
    )

  let elapsedMs: number
  try {
    await runtime.runPromise(
      Effect.forEach(Array.from({ length: settings.tasks }, (_, i) => i), one, { concurrency: settings.concurrency, discard: true })
    )
    elapsedMs = now() - started
  } finally {
    clearInterval(killTimer)
    clearInterval(connTimer)
    clearInterval(progressTimer)
    if (restarting !== undefined) await restarting
    await Promise.race([runtime.dispose(), sleep(5_000)])
  }
  log(`all ${settings.tasks} callers answered in ${(elapsedMs / 1000).toFixed(1)} s; checking Redis`)

  // Workers that never started consuming: how long they have been starting, and their last lines.
  const neverReady = live().filter((w) => !isReady(w))
  for (const w of neverReady) {
    const tail = workerLog(w).trim().split("\n").slice(-4).join("\n      ")
    log(`worker ${w.n} (pid ${w.pid}) not consuming ${((now() - w.startedAt) / 1000).toFixed(1)} s after its start; last lines:\n      ${tail}`)
  }
  // Let the workers finish what is still queued (a message published twice, a hand-back): the queue must drain.
  const drainUntil = now() + 30_000
  for (;;) {
    const left = await admin!.xlen(queueName)
    const pending = Number(((await admin!.xpending(queueName, "taskiq")) as [number])[0])
    if ((left === 0 && pending === 0) || now() > drainUntil) break
    await sleep(200)
  }
  // Stop the workers (SIGTERM: they drain), so that nothing runs while the records are read.
  stopping = true
  for (const w of live()) w.proc.kill("SIGTERM")
  const until = now() + 15_000
  while (workers.some((w) => !w.exited) && now() < until) await sleep(100)

  // ── verification ──
  const c = admin
  const ids = Array.from({ length: settings.tasks }, (_, i) => String(i))
  let lost = 0
  let failed = 0
  let wrong = 0
  const problems: Array<string> = []
  for (const part of chunks(ids, 1000)) {
    const keys = part.map((id) => `${resultPrefix}:${taskIds[Number(id)] ?? "never-submitted"}`)
    const values = await c.mget(...keys)
    values.forEach((json, j) => {
      const id = part[j]!
      if (json === null) {
        lost++
        if (problems.length < 20) problems.push(`task ${id} (${taskIds[Number(id)]}): no result stored`)
        return
      }
      const r = JSON.parse(json) as { is_err: boolean; return_value: unknown; error?: { exc_type?: string; exc_message?: unknown } }
      if (r.is_err) {
        failed++
        if (problems.length < 20) problems.push(`task ${id}: error result ${r.error?.exc_type}: ${JSON.stringify(r.error?.exc_message)}`)
      } else if (r.return_value !== id) {
        wrong++
        if (problems.length < 20) problems.push(`task ${id}: returned ${JSON.stringify(r.return_value)}`)
      }
    })
  }
  const ran = new Set(await c.smembers(`${runId}:ran`))
  const notRun = ids.filter((id) => !ran.has(id))
  const execs = new Map<string, Array<{ pid: number; ms: number }>>()
  for (const m of await c.smembers(`${runId}:execs`)) {
    const [id, pid, ms] = m.split("|")
    const list = execs.get(id!) ?? []
    list.push({ pid: Number(pid), ms: Number(ms) })
    execs.set(id!, list)
  }
  let counterMismatch = 0
  for (const part of chunks(ids, 1000)) {
    const values = await c.mget(...part.map((id) => `${runId}:runs:${id}`))
    values.forEach((v, j) => {
      if (Number(v ?? 0) !== (execs.get(part[j]!)?.length ?? 0)) counterMismatch++
    })
  }
  let duplicates = 0
  let extraRuns = 0
  let byKill = 0
  let byRestart = 0
  const unexplainedSamples: Array<string> = []
  const diedAt = new Map([...killedAt, ...unexpectedExits.map((e) => [e.pid, e.at] as const)])
  const within = (start: number, event: number | undefined) => event !== undefined && event >= start && event - start <= inFlightWindowMs
  for (const [id, runs] of execs) {
    if (runs.length < 2) continue
    duplicates++
    extraRuns += runs.length - 1
    // Explained: every run but the last was in flight at a kill — its worker died (SIGKILLed by us, or on its
    // own) at most inFlightWindowMs after the run started, before it was acknowledged; or, failing that, in
    // flight when Redis went down (renewals stop while Redis is away, so its lease can run out).
    const earlier = [...runs].sort((a, b) => a.ms - b.ms).slice(0, -1)
    if (earlier.every((r) => within(r.ms, diedAt.get(r.pid)))) byKill++
    else if (earlier.every((r) => within(r.ms, diedAt.get(r.pid)) || stats.redisDownAt.some((d) => within(r.ms, d)))) byRestart++
    else if (unexplainedSamples.length < 10) {
      const sorted = [...runs].sort((a, b) => a.ms - b.ms)
      unexplainedSamples.push(`task ${id} ran ${sorted.map((r) => `in pid ${r.pid} at ${((r.ms - t0) / 1000).toFixed(1)}s${diedAt.has(r.pid) ? ` (killed at ${((diedAt.get(r.pid)! - t0) / 1000).toFixed(1)}s)` : ""}`).join(", ")}`)
    }
  }
  const streamLeft = await c.xlen(queueName)
  const pendingLeft = Number(((await c.xpending(queueName, "taskiq")) as [number])[0])
  const deadLetters = await c.xlen(`${queueName}:dead`)
  // Every entry ever added to the stream (Redis 7): more than the tasks means some were published twice (a
  // producer's XADD resent by ioredis after its connection was killed), since nothing was retried or handed back.
  const info = (await c.call("XINFO", "STREAM", queueName)) as Array<unknown>
  const entriesAdded = Number(info[info.indexOf("entries-added") + 1])

  // Warnings and errors the workers logged (kinds, with numbers taken out).
  const kinds = new Map<string, number>()
  for (const w of workers) {
    for (const line of workerLog(w).split("\n")) {
      if (!/warn|error/i.test(line)) continue
      const kind = line.replace(/\x1b\[[0-9;]*m/g, "").replace(/^.*?(WARN|ERROR|warn|error)/i, "$1").replace(/[0-9a-f]{8,}|\d+/g, "#").slice(0, 140)
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
    }
  }

  // Nothing may be left behind either: the queue drained, nothing pending, no dead letters (no task here is poison).
  const ok = lost === 0 && notRun.length === 0 && failed === 0 && wrong === 0 && stats.waitFailures.length === 0 &&
    streamLeft === 0 && pendingLeft === 0 && deadLetters === 0
  const rows: Array<[string, string]> = [
    ["mode", `${settings.mode} (seed ${settings.seed})`],
    ["tasks", String(settings.tasks)],
    ["worker processes (at once / started in all)", `${settings.workers} / ${stats.workerStarts}`],
    ["worker SIGKILLs", String(stats.workerKills)],
    ["worker start-up (spawn → consuming), median", `${(median(workers.filter((w) => w.readyAt !== undefined).map((w) => w.readyAt! - w.startedAt)) / 1000).toFixed(1)} s`],
    ["workers that exited on their own", String(unexpectedExits.length)],
    ["live workers not consuming at the end", String(neverReady.length)],
    ["connection kills (CLIENT KILL rounds / connections)", `${stats.connKillRounds} / ${stats.connectionsKilled}`],
    ["Redis restarts (down for)", `${stats.redisRestarts} (${stats.redisDownMs} ms)`],
    ["submit retries (kiq failed)", String(stats.submitRetries)],
    ["callers answered by waitResult", `${stats.waitOk} / ${settings.tasks}`],
    ["results stored", String(settings.tasks - lost)],
    ["**lost** (no result stored)", String(lost)],
    ["error / wrong results", `${failed} / ${wrong}`],
    ["never ran", String(notRun.length)],
    ["ran more than once (tasks / extra runs)", `${duplicates} / ${extraRuns}`],
    [`… in flight at a worker kill (killed ≤ ${inFlightWindowMs / 1000} s after the run started)`, String(byKill)],
    [`… in flight at the Redis restart (down ≤ ${inFlightWindowMs / 1000} s after the run started)`, String(byRestart)],
    ["… neither (e.g. published twice)", String(duplicates - byKill - byRestart)],
    ["dead letters / left in stream / pending", `${deadLetters} / ${streamLeft} / ${pendingLeft}`],
    ["stream entries added − tasks (published twice)", String(entriesAdded - settings.tasks)],
    ["run counter ≠ recorded runs", String(counterMismatch)],
    ["time (submit → last result)", `${(elapsedMs / 1000).toFixed(1)} s`],
    ["throughput", `${(settings.tasks / (elapsedMs / 1000)).toFixed(0)} tasks/s`],
    ["verdict", ok ? "PASS" : "FAIL"]
  ]
  console.log(`\n| chaos run ${runId} | |\n|---|---|`)
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`)
  if (kinds.size > 0) {
    console.log("\nworker log warnings/errors (kind: count):")
    for (const [k, n] of [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${n}× ${k}`)
  }
  // Callers whose wait failed, grouped by what they got (ids and times taken out), with the first times.
  const waitKinds = new Map<string, Array<string>>()
  for (const f of stats.waitFailures) {
    const at = f.match(/ at ([\d.]+s)/)?.[1] ?? "?"
    const kind = f.replace(/^task \d+( at [\d.]+s)?: /, "").replace(/\b[0-9a-f]{32}\b/g, "…")
    waitKinds.set(kind, [...(waitKinds.get(kind) ?? []), at])
  }
  for (const [kind, ats] of waitKinds) {
    console.log(`  ! ${ats.length} callers: ${kind} (at ${[...new Set(ats)].slice(0, 5).join(", ")})`)
  }
  for (const p of [...problems, ...unexplainedSamples]) console.log(`  ! ${p}`)
  if (notRun.length > 0) console.log(`  ! never ran: ${notRun.slice(0, 20).join(", ")}`)
  if (unexpectedExits.length > 0) console.log(`  unexpected worker exits: ${JSON.stringify(unexpectedExits)}`)
  return ok ? 0 : 1
}

main().then(
  (code) => {
    cleanupSync()
    process.exit(code)
  },
  (e) => {
    console.error("chaos run failed:", e)
    cleanupSync()
    process.exit(2)
  }
)
