/**
 * The queue is not a way to run arbitrary code: forged `kc.exec` messages, sent to a real worker process
 * (`taskiq worker`), get error results and go to the dead-letter queue, and nothing they name runs.
 */
import { assert, describe, it } from "@effect/vitest"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Broker } from "../src/Broker.js"
import { ResultBackend } from "../src/ResultBackend.js"
import * as TaskMessage from "../src/TaskMessage.js"
import { layerRedis, names, uniqueName } from "./utils/redis.js"
import { repoRoot, taskiq } from "./utils/taskiqProcess.js"
import { eventually } from "./utils/wait.js"

describe("kc.exec against a real worker process", () => {
  it.scopedLive("forged messages naming built-ins, absolute paths, '..' or prototype tricks never run", () =>
    Effect.gen(function*() {
      const root = uniqueName("security")
      const ctx = yield* Layer.build(layerRedis(root))
      const outside = mkdtempSync(join(tmpdir(), "taskiq-forged-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(outside, { recursive: true, force: true })))
      const marker = join(outside, "pwned")
      const worker = yield* taskiq(["worker", `${join(repoRoot, "test/fixtures/cliApp.ts")}:app`, "--workers", "1"], {
        TEST_QUEUE: names(root).queueName,
        TEST_PREFIX: names(root).resultPrefix
      })
      yield* worker.waitFor(/consuming "/g)

      const broker = Context.get(ctx, Broker)
      const backend = Context.get(ctx, ResultBackend)
      const forged: ReadonlyArray<readonly [string, string, ReadonlyArray<unknown>]> = [
        ["node:child_process", "execSync", [`touch ${marker}`]],
        ["child_process", "execSync", [`touch ${marker}`]],
        ["/usr/lib/node_modules/npm/index.js", "x", []],
        ["test/fixtures/app/../../../../../../../../tmp/x.ts", "x", []],
        ["test/fixtures/app/tasks.ts", "add.constructor.constructor", [`require('fs').writeFileSync('${marker}', 'x')`]],
        ["test/fixtures/app/tasks.ts", "__proto__", []]
      ]
      const ids: Array<string> = []
      for (const [module, qualname, args] of forged) {
        const taskId = TaskMessage.makeTaskId()
        ids.push(taskId)
        yield* broker.publish({ taskId, taskName: "kc.exec", labels: {}, args: [module, qualname, args, {}], kwargs: {} })
      }
      // A legitimate message in the same queue still runs: the worker is not just refusing everything.
      const okId = TaskMessage.makeTaskId()
      yield* broker.publish({ taskId: okId, taskName: "kc.exec", labels: {}, args: ["test/fixtures/app/tasks.ts", "add", [2, 3], {}], kwargs: {} })
      const ok = Option.getOrThrow(yield* backend.wait(okId, Duration.seconds(30)))
      assert.strictEqual(ok.returnValue, 5)

      for (const taskId of ids) {
        const result = Option.getOrThrow(yield* backend.wait(taskId, Duration.seconds(30)))
        assert.isTrue(result.isErr)
        assert.strictEqual(result.error?.excType, "InvalidTask")
      }
      const dead = yield* eventually(() => Effect.runPromise(broker.deadLetters()), (d) => d.length === forged.length)
      assert.deepStrictEqual(dead.map((d) => d.taskId).sort(), [...ids].sort())
      assert.isFalse(existsSync(marker), "no forged command ran")
    }), { timeout: 90_000 })
})
