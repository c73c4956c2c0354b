/**
 * The `taskiq worker` command, run as real processes (`node bin/taskiq.mjs worker …`) against the test
 * Redis; producers in the test use the library API. Every process a test starts is killed by pid when the
 * test ends, the supervisor's children too.
 */
import { assert, describe, it } from "@effect/vitest"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as App from "../src/App.js"
import { Broker, type Delivery } from "../src/Broker.js"
import { registryOptions, type WorkerCommandConfig, workerOptions } from "../src/cli/WorkerCommand.js"
import { loadApp } from "../src/internal/appLoader.js"
import { scheduleAsync } from "../src/Producer.js"
import * as TaskMessage from "../src/TaskMessage.js"
import { ResultBackend } from "../src/ResultBackend.js"
import * as TaskRegistry from "../src/TaskRegistry.js"
import { pidAndSleep } from "./fixtures/cliTasks.js"
import * as tasks from "./fixtures/tasks.js"
import { cleanupKeys, layerRedis, names, rawClient, uniqueName } from "./utils/redis.js"
import { isAlive, repoRoot, startupMs, taskiq } from "./utils/taskiqProcess.js"
import { eventually as eventuallyEvery } from "./utils/wait.js"

const fixtureApp = join(repoRoot, "test/fixtures/cliApp.ts")
/** The worker command over this test's queue (the fixture App reads it from the environment). */
const worker = (root: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  taskiq(["worker", `${fixtureApp}:app`, ...args], {
    TEST_QUEUE: names(root).queueName,
    TEST_PREFIX: names(root).resultPrefix,
    ...env
  })

/** Polls every 50 ms, 20 s at most: worker processes are slow to start. */
const eventually = <A>(f: () => Promise<A>, ok: (a: A) => boolean, timeoutMs = 20_000) => eventuallyEvery(f, ok, timeoutMs, 50)

const consuming = /consuming "[^"]+" \(maxAsyncTasks (\d+), maxPrefetch (\d+), ack (\w+)/g

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
      assert.deepStrictEqual(app.tasks.map((t) => t.name), ["my.add", "my.divide", "my.slow_echo", "my.flaky_fetch", "my.resize"])
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
    maxPrefetch: Option.none(),
    ackType: Option.none(),
    shutdownTimeout: Option.none(),
    maxDeliveries: Option.none(),
    tracing: false,
    connectRetry: 30,
    v8Pretenuring: false,
    ...over
  })
  const app = App.make({
    appDir: "/srv/app",
    modules: ["a.ts"],
    tasksPattern: ["jobs/*.ts"],
    worker: { maxAsyncTasks: 7, maxPrefetch: 4, ackPolicy: "when_executed", shutdownTimeout: "3 seconds", maxDeliveries: 9, leaseMs: 1234 }
  })

  it("the command line overrides the App's worker settings; the rest are the App's", () => {
    assert.deepStrictEqual(workerOptions(app, config()), {
      maxAsyncTasks: 7,
      maxPrefetch: 4,
      ackPolicy: "when_executed",
      shutdownTimeout: "3 seconds",
      maxDeliveries: 9,
      leaseMs: 1234
    })
    const over = workerOptions(app, config({
      maxAsyncTasks: Option.some(2),
      maxPrefetch: Option.some(0),
      ackType: Option.some("when_received"),
      shutdownTimeout: Option.some(0.5),
      maxDeliveries: Option.some(1)
    }))
    assert.strictEqual(over.maxAsyncTasks, 2)
    assert.strictEqual(over.maxPrefetch, 0, "0 from the command line turns the App's prefetch off")
    assert.strictEqual(over.ackPolicy, "when_received")
    assert.strictEqual(Duration.toMillis(Duration.decode(over.shutdownTimeout!)), 500)
    assert.strictEqual(over.maxDeliveries, 1)
    assert.strictEqual(over.leaseMs, 1234)
    assert.isTrue(workerOptions(app, config({ tracing: true })).tracing, "--tracing turns spans on")
    assert.isTrue(workerOptions(App.make({ worker: { tracing: true } }), config()).tracing, "so does the App's worker.tracing")
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
          "--max-prefetch",
          "--ack-type when_received | when_executed | when_saved",
          "--shutdown-timeout",
          "--max-deliveries",
          "--tracing",
          "--connect-retry",
          "--v8-pretenuring",
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
      // Retried for a second (each failure logged, redacted too), then it gives up.
      const p = yield* taskiq(["worker", "examples/app.ts:app", "--workers", "1"], {
        TASKIQ_REDIS_URL: "redis://user:s3cret-pw@127.0.0.1:1/0",
        TASKIQ_CONNECT_RETRY: "1"
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
      assert.include(p.output(), "V8 allocation-site pretenuring off", "the worker process turns it off by default")
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
      const p = yield* worker(root, [
        "--workers",
        "2",
        "--ack-type",
        "when_executed",
        "--shutdown-timeout",
        "20",
        "--max-prefetch",
        "3",
        "--v8-pretenuring"
      ])
      const ready = yield* p.waitFor(consuming, 2)
      assert.deepStrictEqual(ready.map((m) => m[3]), ["when_executed", "when_executed"], "--ack-type overrides the App")
      assert.deepStrictEqual(ready.map((m) => m[2]), ["3", "3"], "--max-prefetch reaches every worker")
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
      assert.notInclude(p.output(), "pretenuring off", "--v8-pretenuring keeps V8's default in every worker")
    }), { timeout: 120_000 })
})

describe("taskiq dlq", () => {
  /** `taskiq dlq <sub> <app> …` over this test's queue; waits for its exit. */
  const dlq = (root: string, sub: string, args: ReadonlyArray<string> = []) =>
    Effect.gen(function*() {
      const p = yield* taskiq(["dlq", sub, `${fixtureApp}:app`, ...args], {
        TEST_QUEUE: names(root).queueName,
        TEST_PREFIX: names(root).resultPrefix
      })
      const { code } = yield* p.exit()
      return { code, stdout: p.stdout(), output: p.output() }
    })

  it.scopedLive("list (text and --json), requeue --id, and purge --all (refused without --yes) on real dead letters", () =>
    Effect.gen(function*() {
      const root = uniqueName("cli-dlq")
      const { queueName } = names(root)
      const ctx = yield* Layer.build(layerRedis(root))
      const broker = Context.get(ctx, Broker)
      const raw = yield* rawClient()
      const sent = [1, 2].map((n): TaskMessage.TaskMessage => ({
        taskId: TaskMessage.makeTaskId(),
        taskName: "test.dlq",
        labels: {},
        args: [n],
        kwargs: {}
      }))
      for (const m of sent) yield* broker.publish(m)
      yield* broker.publishRaw("not json at all")
      const consumer = yield* broker.consumer({ blockMs: 100 })
      const deliveries: Array<Delivery> = []
      for (let i = 0; i < 20 && deliveries.length < 3; i++) deliveries.push(...yield* consumer.read(3 - deliveries.length))
      assert.strictEqual(deliveries.length, 3)
      for (const [i, d] of deliveries.entries()) yield* consumer.deadLetter(d, `poison ${i}`)
      const dead = yield* broker.deadLetters()
      assert.strictEqual(dead.length, 3)

      const [json, text, refused] = yield* Effect.all([
        dlq(root, "list", ["--json"]),
        dlq(root, "list"),
        dlq(root, "purge", ["--all"])
      ], { concurrency: "unbounded" })
      assert.strictEqual(json.code, 0, json.output)
      const listed = JSON.parse(json.stdout) as Array<Record<string, unknown>>
      assert.deepStrictEqual(listed.map(({ data: _, ...rest }) => rest), [
        { id: dead[0]!.id, taskId: sent[0]!.taskId, taskName: "test.dlq", deliveries: 1, reason: "poison 0" },
        { id: dead[1]!.id, taskId: sent[1]!.taskId, taskName: "test.dlq", deliveries: 1, reason: "poison 1" },
        { id: dead[2]!.id, taskId: null, taskName: null, deliveries: 1, reason: "poison 2" }
      ])
      assert.strictEqual(listed[0]!.data, dead[0]!.data)
      assert.strictEqual(text.code, 0, text.output)
      const lines = text.stdout.trim().split("\n")
      assert.strictEqual(lines.length, 3, text.stdout)
      assert.include(lines[0]!, dead[0]!.id)
      assert.include(lines[0]!, `task ${sent[0]!.taskId}`)
      assert.include(lines[0]!, "test.dlq")
      assert.include(lines[0]!, "deliveries 1")
      assert.include(lines[0]!, "poison 0")
      assert.include(lines[2]!, "(undecodable)")
      assert.strictEqual(refused.code, 2, refused.output)
      assert.include(refused.output, "add --yes to confirm")
      assert.strictEqual((yield* broker.deadLetters()).length, 3, "nothing purged without --yes")

      const requeued = yield* dlq(root, "requeue", ["--id", dead[1]!.id])
      assert.strictEqual(requeued.code, 0, requeued.output)
      assert.include(requeued.stdout, "requeued 1 dead letter")
      const stream = yield* Effect.promise(() => raw.xrange(queueName, "-", "+"))
      assert.deepStrictEqual(stream.map(([, fields]) => fields), [["data", dead[1]!.data]], "the stream got it back")
      assert.deepStrictEqual((yield* broker.deadLetters()).map((d) => d.id), [dead[0]!.id, dead[2]!.id])

      const purged = yield* dlq(root, "purge", ["--all", "--yes"])
      assert.strictEqual(purged.code, 0, purged.output)
      assert.include(purged.stdout, "deleted 2 dead letters")
      assert.strictEqual((yield* broker.deadLetters()).length, 0)
      assert.strictEqual(yield* broker.size, 1, "the requeued message is still queued")
    }), { timeout: 120_000 })
})
