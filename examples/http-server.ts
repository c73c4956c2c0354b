/**
 * An HTTP service that submits tasks, on @effect/platform's HttpServer (Node). The task infrastructure
 * (Broker, ResultBackend, TaskRegistry) is a layer of the same graph as the server: built before the server
 * listens, released after it has closed.
 *
 *   POST /add        {"a": 1, "b": 2}  → 202 {"taskId": "…"}       (kc.exec of examples/kc_tasks.ts:add)
 *   GET  /tasks/:id  [?wait=seconds]   → {"status": "pending"} or
 *                                        {"status": "done", "isErr", "returnValue", "error", "executionTime"}
 *
 * Needs a worker: `npx taskiq worker examples/app.ts:app --workers 1`; then
 * `PORT=8080 npx tsx examples/http-server.ts`. SIGINT/SIGTERM: stops listening, then closes the connections.
 */
import { createServer } from "node:http"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { Config, Duration, Effect, Layer, Option, Schema } from "effect"
import { Main, ResultBackend, scheduleAsync, TaskResult } from "effect-taskiq"
import { app } from "./app.js"
import { add } from "./kc_tasks.js"

const AddBody = Schema.Struct({ a: Schema.Number, b: Schema.Number })
const TaskPath = Schema.Struct({ id: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{32}$/)) })
const TaskQuery = Schema.Struct({ wait: Schema.optional(Schema.NumberFromString.pipe(Schema.between(0, 10))) })

const badRequest = (detail: string) => HttpServerResponse.json({ error: detail }, { status: 400 })

/** What a client sees of a result: the worker's stack trace (`error.pretty`) stays on the server. */
const view = (result: Option.Option<TaskResult.TaskResult>) =>
  Option.match(result, {
    onNone: () => ({ status: "pending" as const }),
    onSome: (r) => ({
      status: "done" as const,
      isErr: r.isErr,
      returnValue: r.returnValue,
      error: r.error && { excType: r.error.excType, message: TaskResult.errorMessage(r.error) },
      executionTime: r.executionTime
    })
  })

const submitAdd = Effect.gen(function*() {
  const { a, b } = yield* HttpServerRequest.schemaBodyJson(AddBody)
  const handle = yield* scheduleAsync(add, a, b)
  return yield* HttpServerResponse.json({ taskId: handle.taskId }, { status: 202 })
}).pipe(
  Effect.catchTags({
    ParseError: () => badRequest('expected a JSON body {"a": number, "b": number}'),
    RequestError: () => badRequest('expected a JSON body {"a": number, "b": number}')
  })
)

const taskStatus = Effect.gen(function*() {
  const { id } = yield* HttpRouter.schemaPathParams(TaskPath)
  const { wait } = yield* HttpServerRequest.schemaSearchParams(TaskQuery)
  const backend = yield* ResultBackend.ResultBackend
  // Without `wait`, one read; with it, a pushed wait of at most 10 seconds (never a long-held request).
  const result = yield* (wait === undefined ? backend.get(id) : backend.wait(id, Duration.seconds(wait)))
  return yield* HttpServerResponse.json(view(result))
}).pipe(
  Effect.catchTag("ParseError", () => badRequest("a task id is 32 hex digits; wait is 0 to 10 seconds"))
)

const router = HttpRouter.empty.pipe(
  HttpRouter.post("/add", submitAdd),
  HttpRouter.get("/tasks/:id", taskStatus),
  // Redis trouble (BrokerError, BackendError…): 503, and the server stays up.
  HttpRouter.catchAll((e) => HttpServerResponse.json({ error: String(e) }, { status: 503 }))
)

const HttpLive = router.pipe(
  HttpServer.serve(),
  HttpServer.withLogAddress,                                 // "Listening on http://…:PORT"
  Layer.provide(NodeHttpServer.layerConfig(createServer, { port: Config.integer("PORT").pipe(Config.withDefault(8080)) })),
  Layer.provide(Main.layer({ app }))                         // Broker, ResultBackend and TaskRegistry (kc.exec), from the environment
)

NodeRuntime.runMain(Layer.launch(HttpLive))
