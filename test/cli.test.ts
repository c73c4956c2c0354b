/**
 * The `taskiq worker` command, run as real processes (`node bin/taskiq.mjs worker …`) against the test
 * Redis; producers in the test use the library API. Every process a test starts is killed by pid when the
 * test ends, the supervisor's children too.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as App from "../src/App.js"
import type { Broker } from "../src/Broker.js"
import { registryOptions, type WorkerCommandConfig, workerOptions } from "../src/cli/WorkerCommand.js"
import { loadApp } from "../src/internal/appLoader.js"
import { scheduleAsync } from "../src/Producer.js"
import { ResultBackend } from "../src/ResultBackend.js"
import * as TaskRegistry from "../src/TaskRegistry.js"
import { pidAndSleep } from "./fixtures/cliTasks.js"
import * as tasks from "./fixtures/tasks.js"
import { cleanupKeys, layerRedis, names, rawClient, redisUrl, uniqueName } from "./utils/redis.js"
import { eventually as eventuallyEvery } from "./utils/wait.js"

const repoRoot = resolve(import.meta.dirname, "..")
const fixtureApp = join(repoRoot, "test/fixtures/cliApp.ts")
// Process start-up (tsx, effect, the app) takes seconds, more on a loaded machine: waits are generous.
const startupMs = 60_000

const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "")

interface CliProcess {
  readonly process: ChildProcess
  /** Everything it (and its children) printed so far, stdout and stderr. */
  readonly output: () => string
  /** Waits until `pattern` (global) matched `count` times; fails early if the process exits. */
  readonly waitFor: (pattern: RegExp, count?: number, timeoutMs?: number) => Effect.Effect<Array<RegExpMatchArray>>
  /** Its exit: the code, or the signal that killed it. */
  readonly exit: (timeoutMs?: number) => Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** The worker processes a supervisor reported starting. */
  readonly childPids: () => Array<number>
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const childPids = (output: string) => [...output.matchAll(/worker \d+ started \(pid (\d+)\)/g)].map((m) => Number(m[1]))

/** Runs `node bin/taskiq.mjs <args>`; the process and the workers it started are SIGKILLed with the scope. */
const taskiq = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.sync((): CliProcess => {
      const proc = spawn(process.execPath, [join(repoRoot, "bin/taskiq.mjs"), ...args], {
        cwd: repoRoot,
        env: { ...process.env, TASKIQ_TEST_REDIS_URL: redisUrl, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let out = ""
      proc.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()))
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
      return { process: proc, output, waitFor, exit, childPids: () => childPids(output()) }
    }),
    (p) =>
      Effect.sync(() => {
        for (const pid of [p.process.pid!, ...p.childPids()]) if (isAlive(pid)) process.kill(pid, "SIGKILL")
      })
  )

/** The worker command over this test's queue (the fixture App reads it from the environment). */
const worker = (root: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  taskiq(["worker", `${fixtureApp}:app`, ...args], {
    TEST_QUEUE: names(root).queueName,
    TEST_PREFIX: names(root).resultPrefix,
    ...env
  })

/** Polls every 50 ms, 20 s at most: worker processes are slow to start. */
const eventually = <A>(f: () => Promise<A>, ok: (a: A) => boolean, timeoutMs = 20_000) => eventuallyEvery(f, ok, timeoutMs, 50)

const consuming = /consuming "[^"]+" \(maxAsyncTasks (\d+), ack (\w+)/g

type Services = Broker | ResultBackend
const inCtx = <A, E>(ctx: Context.Context<Services>, effect: Effect.Effect<A, E, Services>) => Effect.provide(effect, ctx)

describe("loadApp", () => {
  it.effect("accepts an App, a Layer, or an object with a layer; finds files without their extension", () =>
    Effect.gen(function*() {
      const fromLayer = yield* loadApp("test/fixtures/cliShapes:layerOnly", repoRoot)
      assert.isTrue(App.isApp(fromLayer))
      assert.deepStrictEqual(fromLayer.tasks, [])
      const fromObject = yield* loadApp("./test/fixtures/cliShapes.ts:withLayer", repoRoot)
      assert.deepStrictEqual(fromObject.tasks, [pidAndSleep])
      assert.strictEqual(fromObject.worker.maxAsyncTasks, 3)
      const dotted = yield* loadApp("fixtures/cliShapes.ts:nested.deeper.app", join(repoRoot, "test"))
      assert.deepStrictEqual(dotted.tasks, [pidAndSleep])
      const app = yield* loadApp("examples/app.ts:app", repoRoot)
      assert.deepStrictEqual(app.tasks.map((t) => t.name), ["my.add", "my.divide", "my.slow_echo", "my.flaky_fetch"])
      assert.strictEqual(app.registry.appDir, join(repoRoot, "examples"))
    }))

  it.effect("says what is wrong, with a reason", () =>
    Effect.gen(function*() {
      const fail = (spec: string) => Effect.flip(loadApp(spec, repoRoot))
      assert.strictEqual((yield* fail("test/fixtures/cliShapes.ts:throwsOnImport")).reason, "NotAnApp")
      const broken = yield* fail("test/fixtures/cliBroken.ts:app")
      assert.strictEqual(broken.reason, "AppImportFailed")
      assert.include(broken.message, "the app module is broken on purpose")
      assert.strictEqual((yield* fail("test/fixtures/cliShapes.ts:")).reason, "InvalidAppSpec")
      assert.strictEqual((yield* fail("test/fixtures/cliShapes.ts:a-b")).reason, "InvalidAppSpec")
      assert.strictEqual((yield* fail("no-such-package-xyz:app")).reason, "AppNotFound")
    }))
})

describe("worker command options", () => {
  const config = (over: Partial<WorkerCommandConfig> = {}): WorkerCommandConfig => ({
    app: "x:app",
    modules: [],
    fsDiscover: false,
    tasksPattern: [],
    appDir: Option.none(),
    workers: 2,
    maxAsyncTasks: Option.none(),
    ackType: Option.none(),
    shutdownTimeout: Option.none(),
    maxDeliveries: Option.none(),
    ...over
  })
  const app = App.make({
    appDir: "/srv/app",
    modules: ["a.ts"],
    tasksPattern: ["jobs/*.ts"],
    worker: { maxAsyncTasks: 7, ackPolicy: "when_executed", shutdownTimeout: "3 seconds", maxDeliveries: 9, leaseMs: 1234 }
  })

  it("the command line overrides the App's worker settings; the rest are the App's", () => {
    assert.deepStrictEqual(workerOptions(app, config()), {
      maxAsyncTasks: 7,
      ackPolicy: "when_executed",
      shutdownTimeout: "3 seconds",
      maxDeliveries: 9,
      leaseMs: 1234
    })
    const over = workerOptions(app, config({
      maxAsyncTasks: Option.some(2),
      ackType: Option.some("when_received"),
      shutdownTimeout: Option.some(0.5),
      maxDeliveries: Option.some(1)
    }))
    assert.strictEqual(over.maxAsyncTasks, 2)
    assert.strictEqual(over.ackPolicy, "when_received")
    assert.strictEqual(Duration.toMillis(Duration.decode(over.shutdownTimeout!)), 500)
    assert.strictEqual(over.maxDeliveries, 1)
    assert.strictEqual(over.leaseMs, 1234)
  })

  it("task modules add up; patterns and discovery from the command line; the App's own appDir is kept", () => {
    const r = registryOptions(app, config({ modules: ["b.ts"], fsDiscover: true, tasksPattern: ["**/t.ts"], appDir: Option.some("/elsewhere") }))
    assert.deepStrictEqual(r, { appDir: "/srv/app", modules: ["a.ts", "b.ts"], fsDiscover: true, tasksPattern: ["**/t.ts"] })
    const bare = registryOptions(App.make(), config({ appDir: Option.some("/elsewhere") }))
    assert.deepStrictEqual(bare, { appDir: "/elsewhere", modules: [], fsDiscover: false, tasksPattern: undefined })
    assert.deepStrictEqual(registryOptions(app, config()).tasksPattern, ["jobs/*.ts"])
  })
})

describe("taskiq worker", () => {
  it.scopedLive("--help documents every option", () =>
    Effect.gen(function*() {
      const help = yield* taskiq(["worker", "--help"])
      assert.deepStrictEqual(yield* help.exit(), { code: 0, signal: null })
      const text = help.output()
      for (
        const option of [
          "<module:export>",
          "<task-module>",
          "--fs-discover",
          "--tasks-pattern",
          "--app-dir",
          "--workers",
          "--max-async-tasks",
          "--ack-type when_received | when_executed | when_saved",
          "--shutdown-timeout",
          "--max-deliveries",
          "--log-level"
        ]
      ) assert.include(text, option)
      assert.include(text, "**/tasks.{ts,js}", "the default pattern is documented")
    }), { timeout: 90_000 })

  it.scopedLive("a bad <module>:<export> exits non-zero with a clear message, before starting any worker", () =>
    Effect.gen(function*() {
      const root = uniqueName("cli-bad")
      const env = { TEST_QUEUE: names(root).queueName, TEST_PREFIX: names(root).resultPrefix }
      const cases = [
        // The supervisor (--workers 2, the default) checks the App before it starts any worker…
        [[`${fixtureApp}:nope`], `has no export "nope" (it exports: app, notAnApp)`],
        [["test/fixtures/no-such-app.ts:app"], `cannot find the app module "test/fixtures/no-such-app.ts"`],
        // …and a single worker process does the same (other reasons: the loadApp tests).
        [[`${fixtureApp}:notAnApp`, "--workers", "1"], "is a number, not an App"]
      ] as const
      yield* Effect.forEach(cases, ([args, message]) =>
        Effect.gen(function*() {
          const p = yield* taskiq(["worker", ...args], env)
          const { code } = yield* p.exit(startupMs)
          assert.strictEqual(code, 2, p.output())
          assert.include(p.output(), message)
          assert.notInclude(p.output(), "started (pid", "no worker process was started")
        }), { concurrency: "unbounded" })
    }), { timeout: 120_000 })

  it.scopedLive("no secret is printed: a Redis URL's password is redacted when connecting fails", () =>
    Effect.gen(function*() {
      const p = yield* taskiq(["worker", "examples/app.ts:app", "--workers", "1"], {
        TASKIQ_REDIS_URL: "redis://user:s3cret-pw@127.0.0.1:1/0"
      })
      const { code } = yield* p.exit(startupMs)
      assert.strictEqual(code, 1, p.output())
      assert.include(p.output(), "redis://user:***@127.0.0.1:1/0")
      assert.notInclude(p.output(), "s3cret-pw")
    }), { timeout: 90_000 })

  it.scopedLive("--fs-discover imports task modules in nested folders, never in node_modules or dot folders", () =>
    Effect.gen(function*() {
      // A temporary app dir: its modules cannot import packages, plain async functions need none.
      const appDir = mkdtempSync(join(tmpdir(), "taskiq-cli-app-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(appDir, { recursive: true, force: true })))
      const importLog = join(appDir, "imports.log")
      const module = (path: string, body: string) => {
        mkdirSync(dirname(join(appDir, path)), { recursive: true })
        writeFileSync(
          join(appDir, path),
          `import { appendFileSync } from "node:fs"\nappendFileSync(${JSON.stringify(importLog)}, "${path} " + process.pid + "\\n")\n${body}\n`
        )
      }
      writeFileSync(join(appDir, "package.json"), JSON.stringify({ type: "module" }))
      module("tasks.ts", "export async function top(a: number, b: number): Promise<number> { return a + b }")
      module("nested/deep/tasks.js", "export async function deep(s) { return s.toUpperCase() }")
      module("node_modules/evil/tasks.js", "export async function evil() { return 'never' }")
      module(".hidden/tasks.ts", "export async function hidden() { return 'never' }")
      module("other/notatask.ts", "export async function other() { return 'not matched' }")

      const root = uniqueName("cli-discover")
      const ctx = yield* Layer.build(layerRedis(root))
      const p = yield* worker(root, ["--app-dir", appDir, "--fs-discover", "--workers", "1"])
      // Another worker with its own patterns (repeatable) finds other modules.
      const patterns = uniqueName("cli-patterns")
      yield* cleanupKeys(patterns)
      const q = yield* worker(patterns, [
        "--app-dir", appDir, "--fs-discover", "--tasks-pattern", "other/*.ts", "--tasks-pattern", "nested/**/*.js", "--workers", "1"
      ])
      yield* p.waitFor(consuming)
      assert.match(p.output(), /task modules \(app dir [^)]+\): nested\/deep\/tasks\.js, tasks\.ts\n/)
      yield* q.waitFor(consuming)
      assert.match(q.output(), /task modules \(app dir [^)]+\): nested\/deep\/tasks\.js, other\/notatask\.ts\n/)
      const imported = readFileSync(importLog, "utf8").trim().split("\n").filter((l) => l.endsWith(` ${p.process.pid}`))
      assert.deepStrictEqual(imported.map((l) => l.split(" ")[0]).sort(), ["nested/deep/tasks.js", "tasks.ts"])

      // The discovered functions run through kc.exec; the producer finds them by the same discovery.
      const registry = yield* TaskRegistry.make({ appDir, fsDiscover: true })
      const discovered = yield* Effect.promise(() => import(join(appDir, "nested/deep/tasks.js")) as Promise<{ deep: (s: string) => Promise<string> }>)
      const handle = yield* scheduleAsync(discovered.deep, "found").pipe(
        Effect.provideService(TaskRegistry.TaskRegistry, registry),
        Effect.provide(ctx)
      )
      assert.strictEqual(yield* inCtx(ctx, handle.result({ timeout: "20 seconds" })), "FOUND")
      assert.notInclude(readFileSync(importLog, "utf8"), "node_modules/")
      assert.notInclude(readFileSync(importLog, "utf8"), ".hidden/")

      // --workers 1 runs in this process: SIGINT drains it and it exits 0.
      p.process.kill("SIGINT")
      assert.deepStrictEqual(yield* p.exit(), { code: 0, signal: null }, p.output())
      assert.include(p.output(), "worker stopped")
    }), { timeout: 90_000 })

  it.scopedLive("--workers 2: a child SIGKILLed is restarted, its task is reclaimed and tasks keep completing", () =>
    Effect.gen(function*() {
      const root = uniqueName("cli-kill")
      const ctx = yield* Layer.build(layerRedis(root))
      const raw = yield* rawClient()
      const p = yield* worker(root, ["--workers", "2", "--max-async-tasks", "1"], { TEST_LEASE_MS: "1000" })
      const ready = yield* p.waitFor(consuming, 2)
      assert.deepStrictEqual(ready.map((m) => m[1]), ["1", "1"], "--max-async-tasks overrides the App")
      const [first, second] = p.childPids()
      assert.isDefined(second)

      // One long task on each child (each takes one at a time).
      const key = `${root}:pids`
      const handles = yield* inCtx(ctx, Effect.forEach([1, 2], () => pidAndSleep.kiq(key, 2_000)))
      const running = yield* eventually(() => raw.lrange(key, 0, -1), (pids) => pids.length === 2)
      assert.sameMembers(running.map(Number), [first!, second!])
      const victim = Number(running[0])
      process.kill(victim, "SIGKILL")

      const [restart] = yield* p.waitFor(/worker (\d+) \(pid (\d+)\) was killed by SIGKILL; restarting in/g)
      assert.strictEqual(Number(restart![2]), victim)
      yield* p.waitFor(/worker \d+ started \(pid \d+\)/g, 3)
      assert.strictEqual(p.childPids().length, 3)
      assert.isFalse(isAlive(victim))

      // The killed child's task is reclaimed after its lease and completed by a live worker.
      const results = yield* inCtx(ctx, Effect.forEach(handles, (h) => h.waitResult({ timeout: "30 seconds" })))
      assert.isTrue(results.every((r) => !r.isErr))
      const runs = (yield* Effect.promise(() => raw.lrange(key, 0, -1))).map(Number)
      assert.strictEqual(runs.length, 3, "the killed task ran again")
      assert.notStrictEqual(runs[2], victim)
      const sums = yield* inCtx(
        ctx,
        Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) => Effect.flatMap(tasks.add.kiq(i, i), (h) => h.result({ timeout: "20 seconds" })))
      )
      assert.deepStrictEqual(sums, Array.from({ length: 10 }, (_, i) => 2 * i))
      yield* p.waitFor(consuming, 3) // the restarted worker consumes too
    }), { timeout: 120_000 })

  it.scopedLive("SIGTERM with tasks running: forwarded to the workers, which drain; results stored, exit code 0", () =>
    Effect.gen(function*() {
      const root = uniqueName("cli-drain")
      const ctx = yield* Layer.build(layerRedis(root))
      const raw = yield* rawClient()
      const p = yield* worker(root, ["--workers", "2", "--ack-type", "when_executed", "--shutdown-timeout", "20"])
      const ready = yield* p.waitFor(consuming, 2)
      assert.deepStrictEqual(ready.map((m) => m[2]), ["when_executed", "when_executed"], "--ack-type overrides the App")
      const children = p.childPids()

      const key = `${root}:runs`
      const handles = yield* inCtx(ctx, Effect.forEach([1, 2, 3, 4], () => tasks.countAndSleep.kiq(key, 1_500)))
      yield* eventually(() => raw.get(key), (v) => v === "4")
      p.process.kill("SIGTERM")
      assert.deepStrictEqual(yield* p.exit(), { code: 0, signal: null }, p.output())

      const backend = Context.get(ctx, ResultBackend)
      for (const h of handles) {
        const result = yield* backend.get(h.taskId)
        assert.isTrue(Option.isSome(result) && !result.value.isErr, "finished during the drain")
      }
      assert.strictEqual(yield* Effect.promise(() => raw.xlen(names(root).queueName)), 0, "all acknowledged")
      assert.strictEqual(yield* Effect.promise(() => raw.get(key)), "4", "nothing ran twice")
      assert.isTrue(children.every((pid) => !isAlive(pid)), "the children exited")
      assert.match(p.output(), /shutting down: no new tasks; running tasks have 20s to finish/)
      assert.include(p.output(), "stopping 2 worker processes (SIGTERM")
      assert.include(p.output(), "all worker processes stopped")
    }), { timeout: 120_000 })
})
