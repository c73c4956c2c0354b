// The thread behind scheduleAsyncSync (src/SyncPublisher.ts). Plain JavaScript that imports only ioredis:
// the calling thread is blocked in Atomics.wait while this runs, and a TypeScript loader (tsx's module
// hooks) would need the blocked thread and deadlock.
//
// workerData: { url, queueName, streams, publishLua, group, connectTimeoutMs, flag: SharedArrayBuffer, port: MessagePort }
// Requests (on parentPort): { type: "publish", id, json, sig, deadline, stream } (a plain XADD to that stream)
//                         | { type: "publish", id, json, sig, deadline, script: { keys, args } } (publish.lua: a delay
//                             and/or an idempotency key; Broker/Redis.ts publishScript) | { type: "close" }
// Replies (on port):        { id, ok: true, holder } | { id, ok: false, reason, detail } | { id, ok: false, expired: true }
// After each reply, flag[0] is incremented and notified; flag[1] = 1 once this thread is exiting.
import { parentPort, workerData } from "node:worker_threads"

const { url, queueName, streams, publishLua, group, connectTimeoutMs, port } = workerData
const flag = new Int32Array(workerData.flag)

const signal = () => {
  Atomics.add(flag, 0, 1)
  Atomics.notify(flag, 0)
}
process.on("exit", () => {
  Atomics.store(flag, 1, 1)
  signal()
})

let Redis
try {
  ;({ Redis } = await import("ioredis"))
} catch (error) {
  port.postMessage({ id: -1, fatal: `cannot load ioredis: ${error?.stack ?? error}` })
  signal()
  process.exit(1)
}

const errorText = (e) => String(e?.message ?? e)
const retryStrategy = (times) => Math.min(50 * 2 ** Math.min(times, 10), 2_000)

/** The connection, opened (with the group created, as every producer does) on first use. */
let connection
let client
const connect = () => {
  connection ??= (async () => {
    const c = (client = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: null,
      retryStrategy,
      connectTimeout: connectTimeoutMs,
      connectionName: `taskiq:sync-publisher:${queueName.replace(/[^\x21-\x7e]/g, "_")}`
    }))
    // The first error event says why (ECONNREFUSED, a TLS or auth failure); connect() itself only says "closed".
    let firstError
    c.on("error", (e) => void (firstError ??= e))
    try {
      await withTimeout(c.connect().then(() => c.ping()), connectTimeoutMs, "no answer; is Redis running there?")
      for (const stream of streams) {
        await c.xgroup("CREATE", stream, group, "0", "MKSTREAM").catch((e) => {
          if (!errorText(e).includes("BUSYGROUP")) throw e
        })
      }
      c.defineCommand("taskiqPublish", { lua: publishLua })
      return c
    } catch (e) {
      c.disconnect()
      throw firstError ?? e
    }
  })()
  // A failed connect is retried by the next call.
  connection.catch(() => (connection = undefined))
  return connection
}

const withTimeout = (promise, ms, detail) => {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${detail} (after ${ms} ms)`)), ms)))
  ]).finally(() => clearTimeout(timer))
}

const reply = (message) => {
  port.postMessage(message)
  signal()
}

const send = (c, { json, sig, stream, script }) => {
  if (script === undefined) {
    return sig === undefined ? c.xadd(stream, "*", "data", json) : c.xadd(stream, "*", "data", json, "sig", sig)
  }
  return c.taskiqPublish(script.keys.length, ...script.keys, json, ...script.args, sig ?? "")
}

const publish = async ({ id, json, sig, deadline, stream, script }) => {
  if (Date.now() > deadline) return reply({ id, ok: false, expired: true })
  let c
  try {
    c = await connect()
  } catch (e) {
    return reply({ id, ok: false, reason: "Connect", detail: errorText(e) })
  }
  // The caller gave up while this thread was connecting: publishing now would surprise it.
  if (Date.now() > deadline) return reply({ id, ok: false, expired: true })
  try {
    const holder = await send(c, { json, sig, stream, script })
    reply({ id, ok: true, holder: script === undefined ? null : holder ?? null })
  } catch (e) {
    reply({ id, ok: false, reason: "Publish", detail: errorText(e) })
  }
}

// Publishes are handled one after another, in order. A close comes when no caller is blocked (the caller
// closes), so whatever is still queued belongs to calls that already timed out: it is dropped.
let queue = Promise.resolve()
parentPort.on("message", (request) => {
  if (request.type === "publish") {
    queue = queue.then(() => publish(request))
  } else if (request.type === "close") {
    const quit = client?.status === "ready" ? withTimeout(client.quit(), 1_000, "quit") : Promise.resolve()
    quit.catch(() => undefined).finally(() => {
      client?.disconnect()
      process.exit(0)
    })
  }
})
