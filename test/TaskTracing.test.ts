import { assert, describe, it } from "@effect/vitest"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import { Broker } from "../src/Broker.js"
import * as Executor from "../src/Executor.js"
import { scheduleWith } from "../src/Producer.js"
import type { ResultBackend } from "../src/ResultBackend.js"
import * as Task from "../src/Task.js"
import * as TaskMessage from "../src/TaskMessage.js"
import * as TaskTracing from "../src/TaskTracing.js"
import * as Worker from "../src/Worker.js"
import * as tasks from "./fixtures/tasks.js"
import { layerRedis, names, uniqueName } from "./utils/redis.js"
import { startupMs, taskiq } from "./utils/taskiqProcess.js"
import { watchingTracer } from "./utils/tracing.js"

type Services = Broker | ResultBackend

// A task whose handler opens a span of its own.
const inner = Task.make("trace.inner", (n: number) => Effect.withSpan(Effect.succeed(n * 2), "inner-work"))

// Every span the program opens, as Effect's own tracer makes them (they are recorded, not exported).
const recording = Effect.suspend(() => {
  const spans: Array<Tracer.Span> = []
  const named = (name: string) => {
    const found = spans.filter((s) => s.name === name)
    assert.isAtLeast(found.length, 1, `a span named ${name}`)
    return found
  }
  return Effect.map(watchingTracer((span) => void spans.push(span)), (tracer) => ({ spans, tracer, named }))
})

const parentOf = (span: Tracer.Span) => Option.getOrUndefined(span.parent)

const startWorker = (ctx: Context.Context<Services>, options: Worker.WorkerOptions = {}) =>
  Worker.run({ blockMs: 100, ...options }).pipe(
    Effect.provide(Executor.layer([...tasks.all, inner])),
    Effect.provide(ctx),
    Effect.forkScoped
  )

describe("TaskTracing", () => {
  it("traceparent: format and parse are inverse; malformed or all-zero values name no parent", () => {
    const span = Tracer.externalSpan({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", sampled: true })
    const value = TaskTracing.format(span)
    assert.strictEqual(value, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    const parsed = Option.getOrThrow(TaskTracing.parse(value))
    assert.deepStrictEqual([parsed.traceId, parsed.spanId, parsed.sampled], [span.traceId, span.spanId, true])
    assert.isFalse(Option.getOrThrow(TaskTracing.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")).sampled)
    for (const bad of [undefined, 42, "", "garbage", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]) {
      assert.isTrue(Option.isNone(TaskTracing.parse(bad)), String(bad))
    }
  })

  it.scopedLive("on: a submission's span is the parent of its run's span, in the caller's trace; failures and the handler's own spans show", () =>
    Effect.gen(function*() {
      const { named, tracer } = yield* recording
      const ctx = yield* Layer.build(layerRedis(uniqueName("trace-on")))
      const queueName = Context.get(ctx, Broker).queueName
      yield* Effect.gen(function*() {
        yield* startWorker(ctx)
        const submitted = yield* Effect.gen(function*() {
          const sum = yield* tasks.add.kiq(1, 2)
          const failed = yield* tasks.fails.kiq("boom")
          const doubled = yield* inner.kiq(21)
          const many = yield* tasks.add.kiqMany([[1, 1], [2, 2]])
          return { sum, failed, doubled, many }
        }).pipe(Effect.withSpan("request"), Effect.provide(ctx))
        const { doubled, failed, many, sum } = submitted
        const sumResult = yield* Effect.provide(sum.waitResult({ timeout: "5 seconds" }), ctx)
        assert.strictEqual((yield* Effect.provide(failed.waitResult({ timeout: "5 seconds" }), ctx)).isErr, true)
        assert.strictEqual(yield* Effect.provide(doubled.result({ timeout: "5 seconds" }), ctx), 42)
        assert.deepStrictEqual(yield* Effect.provide(Effect.forEach(many, (h) => h.result({ timeout: "5 seconds" })), ctx), [2, 4])

        const [request] = named("request")
        const [send] = named("taskiq.send t.add").filter((s) => s.attributes.get("messaging.message.id") === sum.taskId)
        assert.strictEqual(parentOf(send!)?.spanId, request!.spanId)
        assert.strictEqual(send!.traceId, request!.traceId)
        assert.strictEqual(send!.kind, "producer")
        assert.strictEqual(send!.attributes.get("messaging.destination.name"), queueName)
        // The message carries the submitting span's context; the result keeps the message's labels.
        assert.strictEqual(sumResult.labels[TaskTracing.traceparentLabel], TaskTracing.format(send!))

        const runOf = (taskId: string) => {
          const found = named(`taskiq.run ${taskId === sum.taskId || many.some((h) => h.taskId === taskId) ? "t.add" : taskId === failed.taskId ? "t.fail" : "trace.inner"}`)
            .filter((s) => s.attributes.get("messaging.message.id") === taskId)
          assert.strictEqual(found.length, 1, `one run span for ${taskId}`)
          return found[0]!
        }
        const run = runOf(sum.taskId)
        assert.strictEqual(parentOf(run)?.spanId, send!.spanId)
        assert.strictEqual(run.traceId, request!.traceId)
        assert.strictEqual(run.kind, "consumer")
        assert.strictEqual(run.attributes.get("taskiq.delivery_count"), 1)
        assert.strictEqual(run.attributes.get("taskiq.is_err"), false)
        assert.strictEqual(run.status._tag === "Ended" && run.status.exit._tag, "Success")

        const failedRun = runOf(failed.taskId)
        assert.strictEqual(failedRun.attributes.get("taskiq.is_err"), true)
        assert.strictEqual(failedRun.status._tag === "Ended" && failedRun.status.exit._tag, "Failure")

        const [work] = named("inner-work")
        assert.strictEqual(parentOf(work!)?.spanId, runOf(doubled.taskId).spanId, "the handler's span is a child of its run's")

        // A batch is one submission: both runs are children of its span.
        const [batch] = named("taskiq.send t.add").filter((s) => s.attributes.get("taskiq.tasks") === 2)
        for (const h of many) assert.strictEqual(parentOf(runOf(h.taskId))?.spanId, batch!.spanId)
      }).pipe(Effect.withTracer(tracer), Effect.provide(TaskTracing.layer))
    }))

  it.scopedLive("off (the default): no span of ours, and messages carry no traceparent", () =>
    Effect.gen(function*() {
      const { spans, tracer } = yield* recording
      const ctx = yield* Layer.build(layerRedis(uniqueName("trace-off")))
      yield* Effect.gen(function*() {
        yield* startWorker(ctx)
        const handle = yield* Effect.provide(tasks.add.kiq(2, 3), ctx).pipe(Effect.withSpan("request"))
        const result = yield* Effect.provide(handle.waitResult({ timeout: "5 seconds" }), ctx)
        assert.strictEqual(result.returnValue, 5)
        assert.isUndefined(result.labels[TaskTracing.traceparentLabel])
        assert.deepStrictEqual(spans.map((s) => s.name).filter((name) => name.startsWith("taskiq.")), [])
      }).pipe(Effect.withTracer(tracer))
    }))

  it.scopedLive("a run whose message names no valid parent is a trace of its own, not a child of the worker's span", () =>
    Effect.gen(function*() {
      const { named, spans, tracer } = yield* recording
      const ctx = yield* Layer.build(layerRedis(uniqueName("trace-root")))
      const broker = Context.get(ctx, Broker)
      yield* Effect.gen(function*() {
        yield* startWorker(ctx, { tracing: true }).pipe(Effect.withSpan("worker-process"))
        const messages = [{ traceparent: "garbage" }, {}].map((labels): TaskMessage.TaskMessage => ({
          taskId: TaskMessage.makeTaskId(),
          taskName: "t.add",
          labels,
          args: [1, 1],
          kwargs: {}
        }))
        for (const m of messages) yield* broker.publish(m)
        const ended = (taskId: string) =>
          spans.find((s) => s.name === "taskiq.run t.add" && s.attributes.get("messaging.message.id") === taskId && s.status._tag === "Ended")
        for (let i = 0; i < 250 && !messages.every((m) => ended(m.taskId)); i++) yield* Effect.sleep("20 millis")
        const [process] = named("worker-process")
        for (const m of messages) {
          const run = ended(m.taskId)
          assert.isDefined(run, `the run of ${JSON.stringify(m.labels)} ended`)
          assert.isUndefined(parentOf(run!))
          assert.notStrictEqual(run!.traceId, process!.traceId)
        }
      }).pipe(Effect.withTracer(tracer))
    }))

  it.scopedLive("a traceparent label from any producer (set by hand, untraced) parents the traced run", () =>
    Effect.gen(function*() {
      const { spans, tracer } = yield* recording
      const ctx = yield* Layer.build(layerRedis(uniqueName("trace-label")))
      const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
      yield* Effect.gen(function*() {
        yield* startWorker(ctx, { tracing: true })
        const handle = yield* Effect.provide(scheduleWith(tasks.add, { labels: { traceparent } }, 1, 2), ctx)
        assert.strictEqual(yield* Effect.provide(handle.result({ timeout: "5 seconds" }), ctx), 3)
        const run = spans.find((s) => s.name === "taskiq.run t.add" && s.attributes.get("messaging.message.id") === handle.taskId)
        assert.isDefined(run)
        assert.deepStrictEqual([run!.traceId, parentOf(run!)?.spanId], ["4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"])
        assert.isUndefined(spans.find((s) => s.name.startsWith("taskiq.send")), "the producer was not traced")
      }).pipe(Effect.withTracer(tracer))
    }))

  it.scopedLive("the taskiq worker command traces runs when its App's layer turns tracing on and sets the tracer", () =>
    Effect.gen(function*() {
      const root = uniqueName("trace-cli")
      const dir = mkdtempSync(join(tmpdir(), "taskiq-trace-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const spansFile = join(dir, "spans.jsonl")
      const ctx = yield* Layer.build(layerRedis(root))
      const p = yield* taskiq(["worker", "test/fixtures/cliTracedApp.ts:app", "--workers", "1"], {
        TEST_QUEUE: names(root).queueName,
        TEST_PREFIX: names(root).resultPrefix,
        TEST_SPANS_FILE: spansFile
      })
      yield* p.waitFor(/consuming "[^"]+" \(maxAsyncTasks \d+, maxPrefetch \d+, ack \w+, tracing,/g, 1, startupMs)
      const handle = yield* tasks.add.kiq(2, 3).pipe(Effect.withSpan("request"), Effect.provide(ctx), Effect.provide(TaskTracing.layer))
      const result = yield* Effect.provide(handle.waitResult({ timeout: "10 seconds" }), ctx)
      assert.strictEqual(result.returnValue, 5)
      const send = Option.getOrThrow(TaskTracing.parse(result.labels[TaskTracing.traceparentLabel]))
      // The span ends just after the result is stored: wait for its line.
      const runSpan = () => {
        if (!existsSync(spansFile)) return undefined
        return readFileSync(spansFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((s) => s.name === "taskiq.run t.add" && s.taskId === handle.taskId)
      }
      for (let i = 0; i < 100 && runSpan() === undefined; i++) yield* Effect.sleep("50 millis")
      const run = runSpan()
      assert.isDefined(run, p.output())
      assert.deepStrictEqual([run!.traceId, run!.parentSpanId, run!.kind, run!.exit], [send.traceId, send.spanId, "consumer", "Success"])
    }), { timeout: 90_000 })
})
