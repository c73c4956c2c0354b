import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as CurrentTask from "../src/CurrentTask.js"
import * as Executor from "../src/Executor.js"
import * as Task from "../src/Task.js"
import * as TaskMessage from "../src/TaskMessage.js"
import * as Taskiq from "../src/Taskiq.js"
import * as Worker from "../src/Worker.js"

const whoami = Task.make("t.whoami", () =>
  Effect.map(CurrentTask.current, (info) => ({ ...info, labels: { ...info.labels } })))

const logs: Array<Record<string, unknown>> = []
const logsTask = Task.make("t.logs", () => CurrentTask.withLogAnnotations(Effect.log("inside")))
const collect = Logger.replace(
  Logger.defaultLogger,
  Logger.make(({ annotations }) => void logs.push(Object.fromEntries(HashMap.toEntries(annotations))))
)

const message = (taskName: string, labels: TaskMessage.Labels = {}): TaskMessage.TaskMessage => ({
  taskId: TaskMessage.makeTaskId(),
  taskName,
  labels,
  args: [],
  kwargs: {}
})

describe("CurrentTask", () => {
  it.effect("a handler reads its task id, name, attempt, delivery count and labels", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make([whoami])
      const first = message("t.whoami", { tenant: "acme" })
      const { result } = yield* executor.execute(first)
      assert.deepStrictEqual(result.returnValue, {
        taskId: first.taskId,
        taskName: "t.whoami",
        attempt: 1,
        deliveryCount: 1,
        labels: { tenant: "acme" }
      })
      const retried = message("t.whoami", { [Task.retriesLabel]: 2 })
      const again = yield* executor.execute(retried, 4)
      assert.strictEqual((again.result.returnValue as CurrentTask.TaskInfo).attempt, 3)
      assert.strictEqual((again.result.returnValue as CurrentTask.TaskInfo).deliveryCount, 4)
    }))

  it.effect("outside a task there is none", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(CurrentTask.current)
      assert.strictEqual(error._tag, "NoSuchElementException")
    }))

  it.effect("withLogAnnotations tags a handler's logs with its task", () =>
    Effect.gen(function*() {
      const executor = yield* Executor.make([logsTask])
      const sent = message("t.logs")
      logs.length = 0
      yield* executor.execute(sent).pipe(Effect.provide(collect))
      assert.deepStrictEqual(logs, [{ taskId: sent.taskId, taskName: "t.logs", attempt: 1 }])
    }))
})

describe("CurrentTask in a worker", () => {
  it.live("each task on a slot sees itself; a fiber a handler forks keeps its task after the slot has moved on", () =>
    Effect.gen(function*() {
      const seenLater: Array<string> = []
      const forker = Task.make("t.forker", (label: string) =>
        Effect.gen(function*() {
          yield* Effect.forkDaemon(
            Effect.sleep("150 millis").pipe(
              Effect.zipRight(CurrentTask.current),
              Effect.tap((info) => Effect.sync(() => seenLater.push(`${label}:${info.taskId}`)))
            )
          )
          return (yield* CurrentTask.current).taskId
        }))
      const ctx = yield* Layer.build(Taskiq.layerMemory())
      yield* Worker.run({ maxAsyncTasks: 1, blockMs: 50 }).pipe(
        Effect.provide(Executor.layer([forker])),
        Effect.provide(ctx),
        Effect.forkScoped
      )
      const ids = yield* Effect.forEach(["a", "b", "c"], (label) =>
        Effect.flatMap(forker.kiq(label), (h) => Effect.map(h.result({ timeout: "5 seconds" }), (id) => [label, id, h.taskId] as const))).pipe(
          Effect.provide(ctx)
        )
      for (const [, seen, id] of ids) assert.strictEqual(seen, id, "the handler sees its own task")
      yield* Effect.sleep("400 millis")
      assert.deepStrictEqual([...seenLater].sort(), ids.map(([label, , id]) => `${label}:${id}`).sort())
    }).pipe(Effect.scoped))
})
