import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { resolve } from "node:path"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import { Broker } from "../src/Broker.js"
import * as Executor from "../src/Executor.js"
import * as Main from "../src/Main.js"
import * as TaskRegistry from "../src/TaskRegistry.js"
import * as Taskiq from "../src/Taskiq.js"
import * as Worker from "../src/Worker.js"
import * as app from "./fixtures/app/tasks.js"
import { deleteKeys, names, redisUrl, uniqueName } from "./utils/redis.js"
import { childEnv } from "./utils/taskiqProcess.js"

const appDir = resolve("test/fixtures/app")
const root = uniqueName("main")
const { queueName, resultPrefix } = names(root)
let worker: Fiber.RuntimeFiber<never, unknown>

beforeAll(() => {
  worker = Worker.run({ blockMs: 100 }).pipe(
    Effect.provide(Executor.layerRegistry()),
    Effect.provide(Layer.merge(
      Taskiq.layerRedis({ url: redisUrl, queueName, resultPrefix }),
      TaskRegistry.layer({ appDir, modules: ["tasks.ts"] })
    )),
    Effect.runFork
  )
})

afterAll(async () => {
  await Effect.runPromise(Fiber.interrupt(worker))
  await Effect.runPromise(deleteKeys(root))
})

/** Runs test/fixtures/scripts/main.ts in a child process; resolves to its exit code and output. */
const runScript = (mode: string, env: Record<string, string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolvePromise) => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/scripts/main.ts", mode], {
      env: childEnv({ TASKIQ_REDIS_URL: redisUrl, TASKIQ_QUEUE_NAME: queueName, TASKIQ_RESULT_PREFIX: resultPrefix, ...env }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.on("exit", (code) => resolvePromise({ code, stdout, stderr }))
  })

describe("runMain", () => {
  // The three scripts run at once: a child's start-up (loading TypeScript) dominates.
  it("exit code 0 after a program that ran a task (and exits by itself: every connection closed); 1 on failure", async () => {
    const [ok, failed, unreachable] = await Promise.all([
      runScript("ok", {}),
      runScript("fail", {}),
      runScript("ok", { TASKIQ_REDIS_URL: "redis://user:s3cret@127.0.0.1:1/0" })
    ])
    assert.strictEqual(ok.code, 0, ok.stderr)
    assert.strictEqual(ok.stdout.trim().split("\n").at(-1), "5")

    assert.strictEqual(failed.code, 1)
    assert.include(failed.stderr, "ScriptFailed")

    assert.strictEqual(unreachable.code, 1)
    assert.include(unreachable.stderr, "BrokerError")
    assert.include(unreachable.stderr, "redis://user:***@127.0.0.1:1/0")
    assert.notInclude(unreachable.stderr, "s3cret")
  }, 60_000)
})

describe("Main.layer", () => {
  it.scopedLive("Broker, ResultBackend and TaskRegistry from options, the rest from the environment", () =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(Main.layer({ url: redisUrl, queueName: `${root}:layer`, appDir, modules: ["tasks.ts"], dotEnv: false }))
      assert.strictEqual(Context.get(ctx, Broker).queueName, `${root}:layer`)
      assert.deepStrictEqual(Context.get(ctx, TaskRegistry.TaskRegistry).modules, ["tasks.ts"])
      assert.isTrue(Context.get(ctx, TaskRegistry.TaskRegistry).tasks.includes(app.declared))
    }))

  it("exitCode: 0 on success or interruption alone, 1 on failure or defect", () => {
    assert.strictEqual(Main.exitCode(Exit.succeed(1)), 0)
    assert.strictEqual(Main.exitCode(Exit.interrupt(FiberId.none)), 0)
    assert.strictEqual(Main.exitCode(Exit.fail("no")), 1)
    assert.strictEqual(Main.exitCode(Exit.failCause(Cause.die(new Error("bug")))), 1)
  })
})
