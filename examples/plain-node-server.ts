/**
 * The same HTTP service as examples/http-server.ts, with `node:http` and `TaskiqClient`: the client is
 * started before the server listens and shut down after the server has closed.
 *
 *   POST /add        {"a": 1, "b": 2}  → 202 {"taskId": "…"}       (kc.exec of examples/kc_tasks.ts:add)
 *   GET  /tasks/:id  [?wait=seconds]   → {"status": "pending"} or
 *                                        {"status": "done", "isErr", "returnValue", "error", "executionTime"}
 *
 * Needs a worker: `npx taskiq worker examples/app.ts:app --workers 1`; then
 * `PORT=8080 npx tsx examples/plain-node-server.ts`. SIGINT/SIGTERM: stops listening, then closes the connections.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { TaskiqClient, TaskResult } from "effect-taskiq"
import { app } from "./app.js"
import { add } from "./kc_tasks.js"

const port = Number(process.env.PORT ?? 8080)

const tc = new TaskiqClient({ app })   // Redis from the environment and .env; kc_tasks.ts for kc.exec
await tc.startup()                     // rejects (and the process exits 1) when Redis is unreachable

const send = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body))
}

const readJson = async (req: IncomingMessage): Promise<unknown> => {
  let text = ""
  for await (const chunk of req) {
    text += chunk
    if (text.length > 10_000) throw new Error("body too large")
  }
  return JSON.parse(text)
}

/** What a client sees of a result: the worker's stack trace (`error.pretty`) stays on the server. */
const view = (r: TaskResult.TaskResult | null) =>
  r === null ? { status: "pending" } : {
    status: "done",
    isErr: r.isErr,
    returnValue: r.returnValue,
    error: r.error && { excType: r.error.excType, message: TaskResult.errorMessage(r.error) },
    executionTime: r.executionTime
  }

const handle = async (req: IncomingMessage, res: ServerResponse) => {
  const url = new URL(req.url ?? "/", "http://localhost")
  if (req.method === "POST" && url.pathname === "/add") {
    const body = await readJson(req).catch(() => undefined) as { a?: unknown; b?: unknown } | undefined
    if (typeof body?.a !== "number" || typeof body.b !== "number") {
      return send(res, 400, { error: 'expected a JSON body {"a": number, "b": number}' })
    }
    const task = await tc.scheduleAsync(add, body.a, body.b)
    return send(res, 202, { taskId: task.taskId })
  }
  const match = /^\/tasks\/([^/]+)$/.exec(url.pathname)
  if (req.method === "GET" && match !== null) {
    const id = match[1]!
    const wait = url.searchParams.has("wait") ? Number(url.searchParams.get("wait")) : undefined
    if (!/^[0-9a-f]{32}$/.test(id) || (wait !== undefined && !(wait >= 0 && wait <= 10))) {
      return send(res, 400, { error: "a task id is 32 hex digits; wait is 0 to 10 seconds" })
    }
    // Without `wait`, one read; with it, a pushed wait of at most 10 seconds (never a long-held request).
    const result = wait === undefined
      ? await tc.getResult(id)
      : await tc.handle(id).waitResult(wait).catch((e) => e?._tag === "ResultTimeout" ? null : Promise.reject(e))
    return send(res, 200, view(result))
  }
  send(res, 404, { error: "not found" })
}

const server = createServer((req, res) => {
  // Redis trouble (BrokerError, BackendError…): 503, and the server stays up.
  handle(req, res).catch((e) => send(res, 503, { error: String(e) }))
})
server.listen(port, () => console.log(`Listening on http://localhost:${port}`))

const stop = (signal: string) => {
  console.log(`${signal}: closing`)
  server.close(() => {
    tc.shutdown().then(() => console.log("closed"), (e) => {
      console.error(e)
      process.exitCode = 1
    })
  })
  server.closeIdleConnections()
}
process.once("SIGINT", stop)
process.once("SIGTERM", stop)
