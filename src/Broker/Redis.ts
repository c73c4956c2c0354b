/**
 * The Redis Streams broker: one stream per queue, consumer group `taskiq`, ack = XACK + XDEL,
 * crash recovery by XAUTOCLAIM, lease renewal, and a dead-letter stream.
 */
import { readFileSync } from "node:fs"
import { hostname } from "node:os"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type { Redis } from "ioredis"
import {
  Broker,
  BrokerError,
  type ConsumerOptions,
  type DeadLetter,
  type DeadLetterSelection,
  defaults,
  type Delivery,
  type PublishOptions
} from "../Broker.js"
import * as RedisConnection from "../RedisConnection.js"
import * as TaskMessage from "../TaskMessage.js"

/** Options of the Redis Streams broker. */
export interface RedisBrokerOptions {
  /** The stream's key (default `kc_taskiq_queue`); put a `{hash tag}` in it for Redis Cluster. */
  readonly queueName?: string | undefined
  /** The consumer group (default `taskiq`, as taskiq-redis). */
  readonly group?: string | undefined
  /** Dead letters kept, approximately (default 10,000). */
  readonly maxDeadLetters?: number | undefined
  /** Largest message accepted at publish, bytes (default 1 MiB). */
  readonly maxMessageBytes?: number | undefined
}

/** The default queue name. */
export const defaultQueueName = "kc_taskiq_queue"

/** The key names a queue uses, built in one place. */
export const keys = (queueName: string) =>
  ({
    stream: queueName,
    deadLetters: `${queueName}:dead`,
    delayed: `${queueName}:delayed`,
    wakeChannel: `${queueName}:delayed:wake`
  }) as const

const script = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8")
const scripts = {
  ack: { numberOfKeys: 1, lua: script("ack") },
  renew: { numberOfKeys: 1, lua: script("renew") },
  release: { numberOfKeys: 1, lua: script("release") },
  reclaim: { numberOfKeys: 1, lua: script("reclaim") },
  deadLetter: { numberOfKeys: 2, lua: script("dead_letter") },
  schedule: { numberOfKeys: 1, lua: script("schedule") },
  moveDue: { numberOfKeys: 2, lua: script("move_due") },
  requeueDead: { numberOfKeys: 2, lua: script("requeue_dead") }
} as const

interface ScriptedRedis extends Redis {
  taskiqAck(stream: string, group: string, ...ids: Array<string>): Promise<number>
  taskiqRenew(stream: string, group: string, consumer: string, ...ids: Array<string>): Promise<Array<string>>
  taskiqRelease(stream: string, group: string, consumer: string, ...ids: Array<string>): Promise<number>
  taskiqReclaim(
    stream: string,
    group: string,
    consumer: string,
    minIdleMs: number,
    cursor: string,
    count: number
  ): Promise<[string, Array<[string, Array<string> | null, number]>]>
  taskiqSchedule(delayed: string, data: string, delayMs: number, wakeChannel: string): Promise<number>
  taskiqMoveDue(delayed: string, stream: string, max: number): Promise<[number, number]>
  taskiqRequeueDead(dlq: string, stream: string, max: number, ...ids: Array<string>): Promise<number>
  taskiqDeadLetter(
    stream: string,
    dlq: string,
    group: string,
    id: string,
    data: string,
    reason: string,
    taskId: string,
    deliveries: number,
    maxLen: number
  ): Promise<number>
}

const withScripts = (client: Redis): ScriptedRedis => {
  const c = client as ScriptedRedis
  if (typeof c.taskiqAck !== "function") {
    for (const [name, def] of Object.entries(scripts)) {
      c.defineCommand(`taskiq${name[0]!.toUpperCase()}${name.slice(1)}`, def)
    }
  }
  return c
}

const errorText = (cause: unknown): string => String((cause as Error)?.message ?? cause)

const fieldValue = (fields: ReadonlyArray<string> | null, name: string): string | undefined => {
  if (!fields) return undefined
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]
  return undefined
}

const streamId = /^\d+-\d+$/

/** The selected ids, well-formed and unique (a malformed one cannot be a dead letter), at most `count`. */
const selectedIds = (selection: DeadLetterSelection): Array<string> => {
  const ids = [...new Set(selection.ids ?? [])].filter((id) => streamId.test(id))
  return selection.count === undefined ? ids : ids.slice(0, Math.max(0, selection.count))
}

/** Lua's unpack() has a stack limit, and one script should not run for long: work goes in batches. */
const batchSize = 1000

// `deliveries` counts the deliveries of earlier incarnations of an entry that was handed back (release.lua).
const toDelivery = (id: string, fields: ReadonlyArray<string> | null, deliveryCount: number): Delivery => {
  const data = fieldValue(fields, "data")
  const previous = fieldValue(fields, "deliveries")
  return {
    id,
    deliveryCount: previous === undefined ? deliveryCount : deliveryCount + (Number(previous) || 0),
    data,
    message: data === undefined
      ? Either.left(new TaskMessage.MessageDecodeError({ reason: "InvalidShape", detail: "the stream entry has no 'data' field" }))
      : TaskMessage.decodeJson(data)
  }
}

/** Builds the broker over a connection; creates the consumer group (at id 0, with MKSTREAM). */
export const make = (options: RedisBrokerOptions = {}) =>
  Effect.gen(function*() {
    const conn = yield* RedisConnection.RedisConnection
    const client = withScripts(conn.client)
    const queueName = options.queueName ?? defaultQueueName
    const group = options.group ?? "taskiq"
    const k = keys(queueName)
    const maxDeadLetters = options.maxDeadLetters ?? 10_000
    const maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024
    const fail = (reason: BrokerError["reason"], cause: unknown) =>
      new BrokerError({ reason, detail: errorText(cause), url: conn.url, queue: queueName, cause })

    const ensureGroup = Effect.tryPromise({
      try: () => client.xgroup("CREATE", k.stream, group, "0", "MKSTREAM"),
      catch: (cause) => cause
    }).pipe(
      Effect.catchAll((cause) =>
        errorText(cause).includes("BUSYGROUP") ? Effect.void : Effect.fail(fail("Connect", cause))
      ),
      Effect.asVoid
    )
    yield* ensureGroup

    const publishRaw = (data: string, publishOptions?: PublishOptions) =>
      Buffer.byteLength(data) > maxMessageBytes
        ? Effect.fail(
          new BrokerError({
            reason: "MessageTooLarge",
            detail: `${Buffer.byteLength(data)} bytes is over maxMessageBytes (${maxMessageBytes})`,
            queue: queueName
          })
        )
        : Effect.tryPromise({
          try: (): Promise<unknown> =>
            publishOptions?.delayMs !== undefined && publishOptions.delayMs > 0
              ? client.taskiqSchedule(k.delayed, data, Math.ceil(publishOptions.delayMs), k.wakeChannel)
              : client.xadd(k.stream, "*", "data", data),
          catch: (c) => fail("Publish", c)
        }).pipe(Effect.asVoid)

    // Moves due delayed messages into the stream: sleeps until the next one is due (at most a second),
    // and is woken early when a producer schedules one that is due sooner.
    const moveDelayed = (pollMs: number) => Effect.gen(function*() {
      const subscriber = yield* conn.duplicate(`delayed:${queueName}`)
      const wakes = yield* Queue.sliding<void>(1)
      subscriber.on("message", () => wakes.unsafeOffer(undefined))
      yield* Effect.tryPromise({ try: () => subscriber.subscribe(k.wakeChannel), catch: (c) => fail("Connect", c) })
      const step = Effect.tryPromise({
        try: () => client.taskiqMoveDue(k.delayed, k.stream, 500),
        catch: (c) => fail("Read", c)
      }).pipe(
        Effect.flatMap(([moved, nextMs]) =>
          moved >= 500 ? Effect.void : Effect.raceFirst(
            Effect.sleep(Duration.millis(nextMs < 0 ? pollMs : Math.min(nextMs, pollMs))),
            Queue.take(wakes)
          )
        ),
        Effect.catchAll((e) => Effect.logWarning("moving delayed messages failed; retrying", e).pipe(Effect.zipRight(Effect.sleep("1 second"))))
      )
      return yield* Effect.forever(step)
    })

    const consumer = (consumerOptions: ConsumerOptions = {}) =>
      Effect.gen(function*() {
        const leaseMs = consumerOptions.leaseMs ?? defaults.leaseMs
        const blockMs = consumerOptions.blockMs ?? defaults.blockMs
        const name = `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
        const reader = yield* conn.duplicate(`reader:${queueName}`)
        const held = new Set<string>()
        let cursor = "0-0"
        let nextReclaimAt = 0

        // Lua's unpack() has a stack limit: large id lists go in chunks.
        const chunked = async (ids: ReadonlyArray<string>, f: (chunk: Array<string>) => Promise<unknown>) => {
          for (let i = 0; i < ids.length; i += 1000) await f(ids.slice(i, i + 1000))
        }
        const renew = (ids: ReadonlyArray<string>) =>
          Effect.tryPromise({
            try: () => chunked(ids, (chunk) => client.taskiqRenew(k.stream, group, name, ...chunk)),
            catch: (c) => fail("Ack", c)
          })

        const reclaim = (max: number) =>
          Effect.tryPromise({
            try: () => client.taskiqReclaim(k.stream, group, name, leaseMs, cursor, max),
            catch: (c) => c
          }).pipe(
            Effect.catchAll((cause) => recreateOnNoGroup(cause, ["0-0", []] as const)),
            Effect.map(([next, entries]) => {
              cursor = next
              // A full pass is done when the cursor wraps; then wait a fraction of the lease before the next one.
              if (next === "0-0") nextReclaimAt = Date.now() + Math.max(50, Math.floor(leaseMs / 2))
              return entries.map(([id, fields, count]) => toDelivery(id, fields, Number(count)))
            })
          )

        const readNew = (max: number) =>
          Effect.tryPromise({
            try: () =>
              reader.xreadgroup(
                "GROUP",
                group,
                name,
                "COUNT",
                max,
                "BLOCK",
                blockMs,
                "STREAMS",
                k.stream,
                ">"
              ) as Promise<Array<[string, Array<[string, Array<string>]>]> | null>,
            catch: (c) => c
          }).pipe(
            Effect.catchAll((cause) => recreateOnNoGroup(cause, null)),
            Effect.map((reply) => reply === null || reply[0] === undefined ? [] : reply[0][1].map(([id, fields]) => toDelivery(id, fields, 1)))
          )

        // The stream (and its group) was deleted under us: recreate it and carry on with nothing read.
        const recreateOnNoGroup = <A>(cause: unknown, empty: A) =>
          errorText(cause).includes("NOGROUP") ? Effect.as(ensureGroup, empty) : Effect.fail(fail("Read", cause))

        const read = (max: number) =>
          Effect.suspend(() =>
            max <= 0
              ? Effect.succeed([] as ReadonlyArray<Delivery>)
              : Date.now() >= nextReclaimAt
              ? Effect.flatMap(reclaim(max), (claimed) => claimed.length > 0 ? Effect.succeed(claimed) : readNew(max))
              : readNew(max)
          ).pipe(
            Effect.tap((deliveries) => {
              for (const d of deliveries) held.add(d.id)
            })
          )

        const ackMany = (deliveries: ReadonlyArray<Delivery>) =>
          deliveries.length === 0 ? Effect.void : Effect.tryPromise({
            try: () => chunked(deliveries.map((d) => d.id), (ids) => client.taskiqAck(k.stream, group, ...ids)),
            catch: (c) => fail("Ack", c)
          }).pipe(Effect.tap(() => {
            for (const d of deliveries) held.delete(d.id)
          }))
        const ack = (delivery: Delivery) => ackMany([delivery])

        const releaseIds = (ids: ReadonlyArray<string>) =>
          chunked(ids, (chunk) => client.taskiqRelease(k.stream, group, name, ...chunk))
        const release = (deliveries: ReadonlyArray<Delivery>) =>
          deliveries.length === 0
            ? Effect.void
            : Effect.tryPromise({ try: () => releaseIds(deliveries.map((d) => d.id)), catch: (c) => fail("Ack", c) }).pipe(
              // Even when the hand-back fails (Redis away), stop renewing them: their lease then runs out
              // and any worker reclaims them, instead of this one holding them for ever.
              Effect.ensuring(Effect.sync(() => {
                for (const d of deliveries) held.delete(d.id)
              }))
            )

        const deadLetter = (delivery: Delivery, reason: string) =>
          Effect.tryPromise({
            try: () =>
              client.taskiqDeadLetter(
                k.stream,
                k.deadLetters,
                group,
                delivery.id,
                delivery.data ?? "",
                reason,
                Either.isRight(delivery.message) ? delivery.message.right.taskId : delivery.message.left.taskId ?? "",
                delivery.deliveryCount,
                maxDeadLetters
              ),
            catch: (c) => fail("Ack", c)
          }).pipe(Effect.tap(() => held.delete(delivery.id)), Effect.asVoid)

        yield* moveDelayed(consumerOptions.delayedPollMs ?? 1_000).pipe(Effect.interruptible, Effect.forkScoped)

        // Renew the lease of everything this consumer holds, so a long task is never reclaimed while it runs.
        yield* Effect.suspend(() => held.size === 0 ? Effect.void : renew([...held])).pipe(
          Effect.catchAll((e) => Effect.logWarning("lease renewal failed; retrying", e)),
          Effect.repeat(Schedule.spaced(Math.max(10, Math.floor(leaseMs / 3)))),
          Effect.interruptible,
          Effect.forkScoped
        )

        // On close, hand back what this consumer still holds, including what a cut-off blocking read delivered.
        yield* Effect.addFinalizer(() =>
          Effect.tryPromise(async () => {
            // Cut a blocking read first: whatever it delivered is then in the pending list and handed back below.
            reader.disconnect()
            const pending = await client.xpending(k.stream, group, "-", "+", 10_000, name) as Array<[string, ...Array<unknown>]>
            await releaseIds(pending.map((p) => p[0]))
            await client.xgroup("DELCONSUMER", k.stream, group, name)
          }).pipe(Effect.timeout("2 seconds"), Effect.ignore)
        )

        return { name, read, ack, ackMany, release, deadLetter }
      })

    const deadLetters = (count = 100) =>
      Effect.tryPromise({
        try: () => client.xrange(k.deadLetters, "-", "+", "COUNT", count),
        catch: (c) => fail("Read", c)
      }).pipe(
        Effect.map((entries) =>
          entries.map(([id, fields]): DeadLetter => {
            const taskId = fieldValue(fields, "task_id")
            return {
              id,
              data: fieldValue(fields, "data") ?? "",
              reason: fieldValue(fields, "reason") ?? "",
              taskId: taskId === "" ? undefined : taskId,
              deliveries: Number(fieldValue(fields, "deliveries") ?? 0)
            }
          })
        )
      )

    // Dead letters move or go in batches, each atomic; with no ids, the oldest first until `count` or none are left.
    const forSelection = (
      reason: BrokerError["reason"],
      selection: DeadLetterSelection,
      byIds: (ids: Array<string>) => Promise<number>,
      oldest: (max: number) => Promise<number>
    ) =>
      Effect.tryPromise({
        try: async () => {
          let done = 0
          if (selection.ids !== undefined) {
            const ids = selectedIds(selection)
            for (let i = 0; i < ids.length; i += batchSize) done += await byIds(ids.slice(i, i + batchSize))
            return done
          }
          let remaining = selection.count ?? Number.POSITIVE_INFINITY
          while (remaining > 0) {
            const max = Math.min(batchSize, remaining)
            const n = await oldest(max)
            done += n
            remaining -= n
            if (n < max) break
          }
          return done
        },
        catch: (c) => fail(reason, c)
      })

    const requeueDeadLetters = (selection: DeadLetterSelection = {}) =>
      forSelection(
        "Publish",
        selection,
        (ids) => client.taskiqRequeueDead(k.deadLetters, k.stream, ids.length, ...ids),
        (max) => client.taskiqRequeueDead(k.deadLetters, k.stream, max)
      )

    // XDEL by id (never DEL of the key: a key that is not the dead-letter stream is left alone).
    const purgeDeadLetters = (selection: DeadLetterSelection = {}) =>
      forSelection(
        "Ack",
        selection,
        (ids) => client.xdel(k.deadLetters, ...ids),
        async (max) => {
          const entries = await client.xrange(k.deadLetters, "-", "+", "COUNT", max)
          return entries.length === 0 ? 0 : client.xdel(k.deadLetters, ...entries.map(([id]) => id))
        }
      )

    return Broker.of({
      queueName,
      publish: (message, publishOptions) => Effect.suspend(() => publishRaw(TaskMessage.encodeJson(message), publishOptions)),
      publishRaw,
      delayedSize: Effect.tryPromise({ try: () => client.zcard(k.delayed), catch: (c) => fail("Read", c) }),
      consumer,
      deadLetters,
      requeueDeadLetters,
      purgeDeadLetters,
      size: Effect.tryPromise({ try: () => client.xlen(k.stream), catch: (c) => fail("Read", c) })
    })
  })

/** The broker over a `RedisConnection`. */
export const layer = (options: RedisBrokerOptions = {}): Layer.Layer<Broker, BrokerError, RedisConnection.RedisConnection> =>
  Layer.effect(Broker, make(options))

/** `TASKIQ_QUEUE_NAME`; defaults to `kc_taskiq_queue`. */
export const queueNameConfig: Config.Config<string> = Config.string("TASKIQ_QUEUE_NAME").pipe(
  Config.withDefault(defaultQueueName),
  Config.withDescription("The Redis stream that carries the tasks.")
)

/** The broker configured from the environment (`TASKIQ_QUEUE_NAME`). */
export const layerConfig: Layer.Layer<Broker, BrokerError, RedisConnection.RedisConnection> = Layer.effect(
  Broker,
  Effect.flatMap(
    Effect.mapError(queueNameConfig, (e) => new BrokerError({ reason: "Config", detail: String(e) })),
    (queueName) => make({ queueName })
  )
)
