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
import * as ConfigError from "effect/ConfigError"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
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
  type Idempotency,
  type Priority,
  priorities,
  priorityOf,
  type PublishOptions
} from "../Broker.js"
import * as Coalescer from "../internal/coalescer.js"
import * as Inbox from "../internal/inbox.js"
import type { Finished, RedisResultStore } from "../internal/redisResultStore.js"
import * as Signing from "../internal/signing.js"
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
  /** Largest message accepted at publish, bytes (default 1 MiB); a larger one read from the queue is dead-lettered. */
  readonly maxMessageBytes?: number | undefined
  /**
   * HMAC-SHA256 keys: when given, every published message is signed with the first, and a message read without
   * a valid signature by one of them is dead-lettered unrun (`TASKIQ_SIGNING_KEY`; the others allow rotation).
   */
  readonly signingKeys?: ReadonlyArray<Redacted.Redacted<string> | string> | undefined
}

/** The default queue name. */
export const defaultQueueName = "kc_taskiq_queue"

/** The key names a queue uses, built in one place. Normal priority is the queue's own stream, as in taskiq-redis. */
export const keys = (queueName: string) =>
  ({
    stream: queueName,
    streams: { high: `${queueName}:priority:high`, normal: queueName, low: `${queueName}:priority:low` },
    deadLetters: `${queueName}:dead`,
    delayed: `${queueName}:delayed`,
    wakeChannel: `${queueName}:delayed:wake`,
    idempotency: (key: string) => `${queueName}:idempotency:${key}`
  }) as const

/** A publish's delay in whole milliseconds, or `undefined` when it is to be delivered now. */
export const delayOf = (options: PublishOptions | undefined): number | undefined =>
  options?.delayMs !== undefined && options.delayMs > 0 ? Math.ceil(options.delayMs) : undefined

/** What a delayed member starts with, before its data: its priority, unless normal (move_due.lua reads it back). */
const delayedPrefix = (priority: Priority): string => priority === "normal" ? "" : `${priority}\n`

/**
 * How publish.lua publishes a message with a delay and/or an idempotency key: its keys, and its arguments after the
 * message data (the signature, or "", goes last). Shared with the synchronous publisher's thread.
 */
export const publishScript = (
  k: ReturnType<typeof keys>,
  priority: Priority,
  delayMs: number | undefined,
  idem: Idempotency | undefined
) => {
  const target = delayMs === undefined ? k.streams[priority] : k.delayed
  return {
    keys: idem === undefined ? [target] : [target, k.idempotency(idem.key)],
    args: [delayMs ?? "", k.wakeChannel, delayedPrefix(priority), idem?.taskId ?? "", idem?.ttlMs ?? 0]
  }
}

const script = (name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), "utf8")
const scripts = {
  ack: { numberOfKeys: 1, lua: script("ack") },
  renew: { numberOfKeys: 1, lua: script("renew") },
  release: { numberOfKeys: 1, lua: script("release") },
  reclaim: { numberOfKeys: 1, lua: script("reclaim") },
  deadLetter: { numberOfKeys: 2, lua: script("dead_letter") },
  moveDue: { numberOfKeys: 4, lua: script("move_due") },
  requeueDead: { numberOfKeys: 4, lua: script("requeue_dead") },
  read: { numberOfKeys: 3, lua: `${script("read_new")}\n${script("read")}` },
  complete: { lua: `${script("read_new")}\n${script("complete")}` },
  publishMany: { numberOfKeys: 1, lua: script("publish_many") },
  publishManyLater: { numberOfKeys: 1, lua: script("publish_many_later") },
  // These take a varying number of keys: it is the first argument of each call.
  publish: { lua: script("publish") },
  releaseKeys: { lua: script("release_keys") }
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
  taskiqPublish(numberOfKeys: number, ...keysThenArgs: Array<string | number>): Promise<string | null>
  taskiqReleaseKeys(numberOfKeys: number, ...keysThenArgs: Array<string>): Promise<number>
  taskiqPublishMany(stream: string, signed: "0" | "1", ...data: Array<string>): Promise<number>
  taskiqPublishManyLater(
    delayed: string,
    delayMs: number,
    wakeChannel: string,
    priorityPrefix: string,
    signed: "0" | "1",
    ...data: Array<string>
  ): Promise<number>
  taskiqComplete(
    numberOfKeys: number,
    ...keysThenArgs: Array<string | number>
  ): Promise<readonly [number, ReadonlyArray<[number, Array<[string, Array<string>]>]>]>
  taskiqMoveDue(delayed: string, high: string, normal: string, low: string, max: number): Promise<[number, number]>
  taskiqRequeueDead(dlq: string, normal: string, high: string, low: string, max: number, ...ids: Array<string>): Promise<number>
  taskiqRead(
    high: string,
    normal: string,
    low: string,
    group: string,
    consumer: string,
    count: number,
    turn: number
  ): Promise<[number, Array<[number, Array<[string, Array<string>]>]>]>
  taskiqDeadLetter(
    stream: string,
    dlq: string,
    group: string,
    id: string,
    data: string,
    reason: string,
    taskId: string,
    deliveries: number,
    maxLen: number,
    priority: Priority
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

/**
 * Messages published by one script, at most: concurrent plain publishes, and a bulk publish in as many scripts as
 * it takes. publish_many.lua holds Redis ≈ 2.3 µs a message (a thousand: 2.3 ms, while every worker's completion
 * waits); 256 hold it ≈ 0.55 ms, and a producer with many submissions in flight keeps several scripts on the wire
 * instead of waiting on one (1,000 in flight: 1.95–2.11× BullMQ against 1.51–1.63× with a thousand a script,
 * bench/RESULTS.md).
 */
const maxPerScript = 256

const undecodable = (reason: TaskMessage.MessageDecodeError["reason"], detail: string) =>
  Either.left(new TaskMessage.MessageDecodeError({ reason, detail }))

// Turns a stream entry into a delivery: refuses (as undecodable, so it is dead-lettered unrun) an entry without
// data, larger than allowed, or without a valid signature when messages must be signed.
// `deliveries` counts the deliveries of earlier incarnations of an entry that was handed back (release.lua).
const deliveryDecoder = (maxMessageBytes: number, signer: Signing.Signer | undefined) =>
(priority: Priority, id: string, fields: ReadonlyArray<string> | null, deliveryCount: number): Delivery => {
  const data = fieldValue(fields, "data")
  const previous = fieldValue(fields, "deliveries")
  let message: Delivery["message"]
  if (data === undefined) {
    message = undecodable("InvalidShape", "the stream entry has no 'data' field")
  } else if (data.length * 3 > maxMessageBytes && Buffer.byteLength(data) > maxMessageBytes) {
    message = undecodable("TooLarge", `${Buffer.byteLength(data)} bytes is over maxMessageBytes (${maxMessageBytes})`)
  } else if (signer !== undefined) {
    const sig = fieldValue(fields, "sig")
    message = sig === undefined
      ? undecodable("Unsigned", "the message is not signed, and this worker runs only signed messages")
      : !signer.verify(data, sig)
      ? undecodable("BadSignature", "the message's signature does not match any accepted signing key")
      : TaskMessage.decodeJson(data)
  } else {
    message = TaskMessage.decodeJson(data)
  }
  return {
    id,
    priority,
    deliveryCount: previous === undefined ? deliveryCount : deliveryCount + (Number(previous) || 0),
    data,
    message
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
    const signer = Signing.make(options.signingKeys ?? [])
    const toDelivery = deliveryDecoder(maxMessageBytes, signer)
    const fail = (reason: BrokerError["reason"], cause: unknown) =>
      new BrokerError({ reason, detail: errorText(cause), url: conn.url, queue: queueName, cause })

    const streamOf = (priority: Priority) => k.streams[priority]
    const ensureGroup = Effect.forEach(priorities, (priority) =>
      Effect.tryPromise({
        try: () => client.xgroup("CREATE", streamOf(priority), group, "0", "MKSTREAM"),
        catch: (cause) => cause
      }).pipe(
        Effect.catchAll((cause) =>
          errorText(cause).includes("BUSYGROUP") ? Effect.void : Effect.fail(fail("Connect", cause))
        )
      ), { discard: true })
    yield* ensureGroup

    const tooLarge = (data: string) =>
      new BrokerError({
        reason: "MessageTooLarge",
        detail: `${Buffer.byteLength(data)} bytes is over maxMessageBytes (${maxMessageBytes})`,
        queue: queueName
      })

    // The publish path makes no named closure per message: tsx compiles with keepNames, which gives each a
    // defineProperty (7 % of a plain kiq's CPU, measured).
    const publishFailed = (c: unknown) => fail("Publish", c)
    // A string's UTF-8 bytes are at most 3 per UTF-16 unit: count them only when that could matter.
    const overLimit = (data: string) => data.length * 3 > maxMessageBytes && Buffer.byteLength(data) > maxMessageBytes
    // Each message followed by its signature when messages are signed.
    const withSignatures = (batch: ReadonlyArray<string>): ReadonlyArray<string> => {
      if (signer === undefined) return batch
      const args: Array<string> = []
      for (const d of batch) args.push(d, signer.sign(d))
      return args
    }
    const signedFlag = signer === undefined ? "0" : "1"
    // Many messages (at most `maxPerScript`: one script should not hold Redis for long) in one publish_many.lua.
    const publishManyTo = (stream: string, batch: ReadonlyArray<string>): Promise<number> =>
      client.taskiqPublishMany(stream, signedFlag, ...withSignatures(batch))
    // Many messages due after the same delay, in one publish_many_later.lua (members as publish.lua makes them).
    const publishManyLater = (priority: Priority, delayMs: number, batch: ReadonlyArray<string>): Promise<number> =>
      client.taskiqPublishManyLater(k.delayed, delayMs, k.wakeChannel, delayedPrefix(priority), signedFlag, ...withSignatures(batch))
    // Plain messages published in the same turn go out together: one XADD, or publish_many.lua for several.
    const sendTo = (stream: string) => (batch: ReadonlyArray<string>): Promise<unknown> => {
      if (batch.length > 1) return publishManyTo(stream, batch)
      const data = batch[0]!
      return signer === undefined
        ? client.xadd(stream, "*", "data", data)
        : client.xadd(stream, "*", "data", data, "sig", signer.sign(data))
    }
    const plain: Record<Priority, Coalescer.Submit<string, BrokerError>> = {
      high: Coalescer.make(sendTo(k.streams.high), publishFailed, maxPerScript),
      normal: Coalescer.make(sendTo(k.streams.normal), publishFailed, maxPerScript),
      low: Coalescer.make(sendTo(k.streams.low), publishFailed, maxPerScript)
    }
    // A plain message is one XADD; a delayed one or one with an idempotency key goes through publish.lua.
    const publishTo = (priority: Priority, data: string, publishOptions: PublishOptions | undefined) => {
      if (overLimit(data)) return Effect.fail(tooLarge(data))
      const delayMs = delayOf(publishOptions)
      const idem = publishOptions?.idempotency
      if (delayMs === undefined && idem === undefined) {
        return Effect.as(plain[priority](data), undefined)
      }
      return Effect.tryPromise({
        try: async (): Promise<string | undefined> => {
          const { keys: scriptKeys, args } = publishScript(k, priority, delayMs, idem)
          const holder = await client.taskiqPublish(scriptKeys.length, ...scriptKeys, data, ...args, signer?.sign(data) ?? "")
          return holder ?? undefined
        },
        catch: publishFailed
      })
    }

    const publishRaw = (data: string, publishOptions?: PublishOptions) =>
      publishTo(publishOptions?.priority ?? "normal", data, publishOptions)

    const publishManyRaw = (data: ReadonlyArray<string>, priority: Priority = "normal", delayMs?: number) =>
      Effect.suspend(() => {
        for (const d of data) if (overLimit(d)) return Effect.fail(tooLarge(d))
        const later = delayOf({ delayMs })
        return Effect.tryPromise({
          // Every script goes out at once, in order on the one connection: a single round trip for the whole batch,
          // and no script holds Redis for long.
          try: async () => {
            const sent: Array<Promise<number>> = []
            for (let i = 0; i < data.length; i += maxPerScript) {
              const batch = data.slice(i, i + maxPerScript)
              sent.push(later === undefined ? publishManyTo(streamOf(priority), batch) : publishManyLater(priority, later, batch))
            }
            await Promise.all(sent)
          },
          catch: (c) => fail("Publish", c)
        })
      })

    const releaseIdempotencyKeys = (entries: ReadonlyArray<{ readonly key: string; readonly taskId: string }>) =>
      entries.length === 0 ? Effect.void : Effect.tryPromise({
        try: () =>
          client.taskiqReleaseKeys(entries.length, ...entries.map((e) => k.idempotency(e.key)), ...entries.map((e) => e.taskId)),
        catch: (c) => fail("Ack", c)
      }).pipe(Effect.asVoid)

    // Moves due delayed messages into the stream: sleeps until the next one is due (at most a second),
    // and is woken early when a producer schedules one that is due sooner.
    const moveDelayed = (pollMs: number) => Effect.gen(function*() {
      const subscriber = yield* conn.duplicate(`delayed:${queueName}`)
      const wakes = yield* Queue.sliding<void>(1)
      subscriber.on("message", () => wakes.unsafeOffer(undefined))
      yield* Effect.tryPromise({ try: () => subscriber.subscribe(k.wakeChannel), catch: (c) => fail("Connect", c) })
      const step = Effect.tryPromise({
        try: () => client.taskiqMoveDue(k.delayed, k.streams.high, k.streams.normal, k.streams.low, 500),
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
        // What this consumer holds, per priority (entry ids are unique only within their stream).
        const held: Record<Priority, Set<string>> = { high: new Set(), normal: new Set(), low: new Set() }
        const cursors: Record<Priority, string> = { high: "0-0", normal: "0-0", low: "0-0" }
        let nextReclaimAt = 0
        let turn = 0

        // Lua's unpack() has a stack limit: large id lists go in chunks.
        const chunked = async (ids: ReadonlyArray<string>, f: (chunk: Array<string>) => Promise<unknown>) => {
          for (let i = 0; i < ids.length; i += 1000) await f(ids.slice(i, i + 1000))
        }
        // Runs `f` once per priority that has deliveries, with their ids.
        const perPriority = async (deliveries: ReadonlyArray<Delivery>, f: (stream: string, ids: Array<string>) => Promise<unknown>) => {
          for (const priority of priorities) {
            const ids: Array<string> = []
            for (const d of deliveries) if (d.priority === priority) ids.push(d.id)
            if (ids.length > 0) await chunked(ids, (chunk) => f(streamOf(priority), chunk))
          }
        }
        const forget = (deliveries: ReadonlyArray<Delivery>) => {
          for (const d of deliveries) held[d.priority].delete(d.id)
        }

        const renew = Effect.tryPromise({
          try: async () => {
            for (const priority of priorities) {
              if (held[priority].size > 0) {
                await chunked([...held[priority]], (chunk) => client.taskiqRenew(streamOf(priority), group, name, ...chunk))
              }
            }
          },
          catch: (c) => fail("Ack", c)
        })

        // One pass over the priorities' pending entries, continuing each stream's cursor, until something is claimed.
        const reclaim = (max: number) =>
          Effect.tryPromise({
            try: async () => {
              let wrapped = 0
              for (const priority of priorities) {
                const [next, entries] = await client.taskiqReclaim(streamOf(priority), group, name, leaseMs, cursors[priority], max)
                cursors[priority] = next
                if (next === "0-0") wrapped++
                if (entries.length > 0) return entries.map(([id, fields, count]) => toDelivery(priority, id, fields, Number(count)))
              }
              // A full pass is done when every cursor wrapped; then wait a fraction of the lease before the next one.
              if (wrapped === priorities.length) nextReclaimAt = Date.now() + Math.max(50, Math.floor(leaseMs / 2))
              return []
            },
            catch: (c) => c
          }).pipe(Effect.catchAll((cause) => recreateOnNoGroup(cause, [] as Array<Delivery>)))

        const priorityAt = (index: number): Priority => priorities[index - 1] ?? "normal"

        // New entries, three ways. read.lua takes higher priorities first (lower ones get their turns); it runs
        // while the high or low stream holds any message, and on every eighth read to look for them. Otherwise a
        // busy consumer reads the normal stream with one plain XREADGROUP, and an idle one blocks on all three
        // streams at once (the first message of any priority wakes it).
        let prioritiesSeen = false
        // Whether the last read left the stream empty: it returned fewer entries than it asked for. Then the next read
        // blocks at once (a blocking read still returns at once when entries are there) instead of first trying a
        // non-blocking one that would find nothing: one command per task fewer when the worker keeps up.
        let lastWasEmpty = true
        const entriesOf = (priority: Priority, entries: Array<[string, Array<string>]>, out: Array<Delivery>) => {
          for (const [id, fields] of entries) out.push(toDelivery(priority, id, fields, 1))
        }
        const blockingRead = async (max: number): Promise<Array<Delivery>> => {
          const reply = await reader.xreadgroup(
            "GROUP",
            group,
            name,
            "COUNT",
            max,
            "BLOCK",
            blockMs,
            "STREAMS",
            k.streams.high,
            k.streams.normal,
            k.streams.low,
            ">",
            ">",
            ">"
          ) as Array<[string, Array<[string, Array<string>]>]> | null
          const out: Array<Delivery> = []
          for (const [stream, entries] of reply ?? []) {
            const priority = stream === k.streams.high ? "high" : stream === k.streams.low ? "low" : "normal"
            if (priority !== "normal") prioritiesSeen = true
            entriesOf(priority, entries, out)
          }
          return out
        }
        const normalRead = async (max: number): Promise<Array<Delivery>> => {
          const reply = await client.xreadgroup("GROUP", group, name, "COUNT", max, "STREAMS", k.streams.normal, ">") as
            | Array<[string, Array<[string, Array<string>]>]>
            | null
          const out: Array<Delivery> = []
          if (reply !== null && reply[0] !== undefined) entriesOf("normal", reply[0][1], out)
          return out
        }
        const prioritizedRead = async (max: number, readNumber: number): Promise<Array<Delivery>> => {
          const [any, now] = await client.taskiqRead(k.streams.high, k.streams.normal, k.streams.low, group, name, max, readNumber)
          const out: Array<Delivery> = []
          for (const [index, entries] of now) entriesOf(priorityAt(index), entries, out)
          // Prioritized reads go on while any high or low priority message is waiting or running.
          prioritiesSeen = any === 1
          return out
        }
        const readNew = (max: number) =>
          Effect.tryPromise({
            try: async (): Promise<Array<Delivery>> => {
              // Every read counts towards the lower priorities' turns (read.lua).
              const readNumber = turn++
              let out: Array<Delivery> = []
              if (prioritiesSeen || readNumber % 8 === 0) out = await prioritizedRead(max, readNumber)
              else if (!lastWasEmpty) out = await normalRead(max)
              if (out.length === 0) out = await blockingRead(max)
              lastWasEmpty = out.length < max
              return out
            },
            catch: (c) => c
          }).pipe(
            Effect.catchAll((cause) => recreateOnNoGroup(cause, [] as Array<Delivery>)),
            // When messages arrived on several streams at once, a blocking read returns up to `max` from each:
            // hand the surplus back (lowest priorities first). Rare: an idle consumer woken by a burst.
            Effect.flatMap((out) => {
              if (out.length <= max) return Effect.succeed(out)
              out.sort((a, b) => priorities.indexOf(a.priority) - priorities.indexOf(b.priority))
              const surplus = out.slice(max)
              return Effect.as(
                Effect.tryPromise({
                  try: () => perPriority(surplus, (stream, ids) => client.taskiqRelease(stream, group, name, ...ids)),
                  catch: (c) => fail("Read", c)
                }),
                out.slice(0, max)
              )
            })
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
              for (const d of deliveries) held[d.priority].add(d.id)
            })
          )

        const ackMany = (deliveries: ReadonlyArray<Delivery>) =>
          deliveries.length === 0 ? Effect.void : Effect.tryPromise({
            try: () => perPriority(deliveries, (stream, ids) => client.taskiqAck(stream, group, ...ids)),
            catch: (c) => fail("Ack", c)
          }).pipe(Effect.tap(() => forget(deliveries)))
        const ack = (delivery: Delivery) => ackMany([delivery])

        const release = (deliveries: ReadonlyArray<Delivery>) =>
          deliveries.length === 0
            ? Effect.void
            : Effect.tryPromise({
              try: () => perPriority(deliveries, (stream, ids) => client.taskiqRelease(stream, group, name, ...ids)),
              catch: (c) => fail("Ack", c)
            }).pipe(
              // Even when the hand-back fails (Redis away), stop renewing them: their lease then runs out
              // and any worker reclaims them, instead of this one holding them for ever.
              Effect.ensuring(Effect.sync(() => forget(deliveries)))
            )

        const deadLetter = (delivery: Delivery, reason: string) =>
          Effect.tryPromise({
            try: () =>
              client.taskiqDeadLetter(
                streamOf(delivery.priority),
                k.deadLetters,
                group,
                delivery.id,
                delivery.data ?? "",
                reason,
                Either.isRight(delivery.message) ? delivery.message.right.taskId : delivery.message.left.taskId ?? "",
                delivery.deliveryCount,
                maxDeadLetters,
                delivery.priority
              ),
            catch: (c) => fail("Ack", c)
          }).pipe(Effect.tap(() => forget([delivery])), Effect.asVoid)

        yield* moveDelayed(consumerOptions.delayedPollMs ?? 1_000).pipe(Effect.interruptible, Effect.forkScoped)

        // Renew the lease of everything this consumer holds, so a long task is never reclaimed while it runs.
        yield* renew.pipe(
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
            for (const priority of priorities) {
              const stream = streamOf(priority)
              const pending = await client.xpending(stream, group, "-", "+", 10_000, name) as Array<[string, ...Array<unknown>]>
              await chunked(pending.map((p) => p[0]), (ids) => client.taskiqRelease(stream, group, name, ...ids))
              await client.xgroup("DELCONSUMER", stream, group, name)
            }
          }).pipe(Effect.timeout("2 seconds"), Effect.ignore)
        )

        // Results and acks in one script, when the results go to this connection's Redis (Taskiq.layerRedis).
        const ackWithResults = (batch: ReadonlyArray<Finished<Delivery>>, store: RedisResultStore, readAhead = 0) =>
          Effect.suspend((): Effect.Effect<ReadonlyArray<Delivery> | undefined, BrokerError> => {
            if (store.client !== conn.client || batch.length === 0) return Effect.succeed(undefined)
            const n = batch.length
            const keys: Array<string> = new Array(n + 5)
            const args: Array<string | number> = new Array(2 * n + 6)
            keys[0] = store.cancelledKey
            args[0] = store.ttlMs
            args[1] = n
            const ids: Record<Priority, Array<string>> = { high: [], normal: [], low: [] }
            for (let i = 0; i < n; i++) {
              const c = batch[i]!
              const json = store.encode(c.taskId, c.result)
              if (Either.isLeft(json)) return Effect.succeed(undefined)
              keys[i + 1] = store.keyOf(c.taskId)
              args[i + 2] = json.right
              args[n + i + 2] = Inbox.replyChannel(c.result.labels)
              ids[c.delivery.priority].push(c.delivery.id)
            }
            keys[n + 1] = k.streams.high
            keys[n + 2] = k.streams.normal
            keys[n + 3] = k.streams.low
            keys[n + 4] = store.watchersKey
            args[2 * n + 2] = group
            args[2 * n + 3] = ids.high.length
            args[2 * n + 4] = ids.normal.length
            args[2 * n + 5] = ids.low.length
            // No read-ahead when a reclaim pass is due: the slots go back to the reader, whose read reclaims what
            // dead consumers left (a consumer kept busy by read-ahead alone would never look).
            if (Date.now() >= nextReclaimAt) readAhead = 0
            // Reading ahead counts as a read for the lower priorities' turns, as any other.
            const readNumber = readAhead > 0 ? turn++ : 0
            return Effect.tryPromise({
              try: () =>
                client.taskiqComplete(
                  n + 5,
                  ...keys,
                  ...args,
                  ...ids.high,
                  ...ids.normal,
                  ...ids.low,
                  name,
                  Math.max(0, Math.floor(readAhead)),
                  readNumber
                ),
              catch: (c) => fail("Ack", c)
            }).pipe(
              Effect.catchAll((e) => errorText(e.cause).includes("NOGROUP") ? Effect.as(ensureGroup, [0, []] as const) : Effect.fail(e)),
              Effect.map(([any, entries]) => {
                for (const c of batch) held[c.delivery.priority].delete(c.delivery.id)
                const next: Array<Delivery> = []
                for (const [index, list] of entries) entriesOf(priorityAt(index), list, next)
                for (const d of next) held[d.priority].add(d.id)
                if (readAhead > 0) {
                  prioritiesSeen = any === 1
                  lastWasEmpty = next.length < readAhead
                }
                return next
              })
            )
          })

        return { name, read, ack, ackMany, release, deadLetter, ackWithResults }
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
              deliveries: Number(fieldValue(fields, "deliveries") ?? 0),
              priority: priorityOf({ priority: fieldValue(fields, "priority") })
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
        (ids) => client.taskiqRequeueDead(k.deadLetters, k.streams.normal, k.streams.high, k.streams.low, ids.length, ...ids),
        (max) => client.taskiqRequeueDead(k.deadLetters, k.streams.normal, k.streams.high, k.streams.low, max)
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
      publish: (message, publishOptions) =>
        Effect.suspend(() =>
          publishTo(publishOptions?.priority ?? priorityOf(message.labels), TaskMessage.encodeJson(message), publishOptions)
        ),
      publishRaw,
      publishManyRaw,
      releaseIdempotencyKeys,
      delayedSize: Effect.tryPromise({ try: () => client.zcard(k.delayed), catch: (c) => fail("Read", c) }),
      consumer,
      deadLetters,
      requeueDeadLetters,
      purgeDeadLetters,
      size: Effect.tryPromise({
        try: async () => {
          const [high, normal, low] = await Promise.all(priorities.map((p) => client.xlen(streamOf(p))))
          return high! + normal! + low!
        },
        catch: (c) => fail("Read", c)
      })
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

/**
 * `TASKIQ_SIGNING_KEY` (signs, and is accepted) and `TASKIQ_SIGNING_KEYS_ACCEPTED` (more keys accepted, comma-
 * separated: the previous key while a rotation rolls out). None set: messages are neither signed nor checked.
 */
export const signingKeysConfig: Config.Config<ReadonlyArray<Redacted.Redacted<string>>> = Config.all({
  current: Config.option(Config.redacted("TASKIQ_SIGNING_KEY")),
  accepted: Config.option(Config.redacted("TASKIQ_SIGNING_KEYS_ACCEPTED"))
}).pipe(
  Config.mapOrFail(({ accepted, current }) => {
    const more = Option.match(accepted, {
      onNone: () => [],
      onSome: (list) => Redacted.value(list).split(",").map((k) => k.trim()).filter((k) => k.length > 0).map(Redacted.make)
    })
    if (Option.isNone(current)) {
      return more.length === 0
        ? Either.right([])
        : Either.left(ConfigError.InvalidData(["TASKIQ_SIGNING_KEYS_ACCEPTED"], "is set without TASKIQ_SIGNING_KEY, the key that signs"))
    }
    return Redacted.value(current.value).length === 0
      ? Either.left(ConfigError.InvalidData(["TASKIQ_SIGNING_KEY"], "is empty"))
      : Either.right([current.value, ...more])
  })
)

/** The broker configured from the environment (`TASKIQ_QUEUE_NAME`, `TASKIQ_SIGNING_KEY`, `TASKIQ_SIGNING_KEYS_ACCEPTED`). */
export const layerConfig: Layer.Layer<Broker, BrokerError, RedisConnection.RedisConnection> = Layer.effect(
  Broker,
  Effect.flatMap(
    Effect.mapError(
      Config.all({ queueName: queueNameConfig, signingKeys: signingKeysConfig }),
      (e) => new BrokerError({ reason: "Config", detail: String(e) })
    ),
    make
  )
)
