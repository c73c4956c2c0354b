/**
 * An in-memory broker with the Redis broker's semantics (leases, reclaim, dead letters), for tests
 * and demos in one process.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import {
  Broker,
  BrokerError,
  type ConsumerOptions,
  type DeadLetter,
  type DeadLetterSelection,
  defaults,
  type Delivery,
  type Priority,
  priorities,
  priorityOf,
  type PublishOptions
} from "../Broker.js"
import * as TaskMessage from "../TaskMessage.js"

/** Options of the in-memory broker. */
export interface MemoryBrokerOptions {
  readonly queueName?: string | undefined
  readonly maxMessageBytes?: number | undefined
}

interface Entry {
  readonly id: string
  readonly priority: Priority
  readonly data: string
  owner: string | undefined
  deliveredAt: number
  deliveries: number
}

/** Builds an in-memory broker. */
export const make = (options: MemoryBrokerOptions = {}) =>
  Effect.sync(() => {
    const queueName = options.queueName ?? "memory"
    const maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024
    const entries = new Map<string, Entry>()
    const fresh: Record<Priority, Array<Entry>> = { high: [], normal: [], low: [] }
    const idempotencyKeys = new Map<string, { taskId: string; expiresAt: number }>()
    const dead: Array<DeadLetter> = []
    const waiters = new Set<() => void>()
    let seq = 0

    const wake = () => {
      for (const w of waiters) w()
      waiters.clear()
    }

    // Timers of delayed publishes, with how many messages each will publish.
    const timers = new Map<ReturnType<typeof setTimeout>, number>()
    const tooLarge = (data: string) =>
      Buffer.byteLength(data) > maxMessageBytes
        ? new BrokerError({
          reason: "MessageTooLarge",
          detail: `${Buffer.byteLength(data)} bytes is over maxMessageBytes (${maxMessageBytes})`,
          queue: queueName
        })
        : undefined
    const publishTo = (priority: Priority, data: string, publishOptions?: PublishOptions): Effect.Effect<string | undefined, BrokerError> =>
      Effect.suspend(() => {
        const refused = tooLarge(data)
        if (refused !== undefined) return Effect.fail(refused)
        const idem = publishOptions?.idempotency
        if (idem !== undefined) {
          const holder = idempotencyKeys.get(idem.key)
          if (holder !== undefined && holder.expiresAt > Date.now()) return Effect.succeed(holder.taskId)
          idempotencyKeys.set(idem.key, { taskId: idem.taskId, expiresAt: Date.now() + idem.ttlMs })
        }
        const delayMs = publishOptions?.delayMs
        if (delayMs !== undefined && delayMs > 0) return Effect.as(publishLater(priority, [data], delayMs), undefined)
        const entry: Entry = { id: `${Date.now()}-${seq++}`, priority, data, owner: undefined, deliveredAt: 0, deliveries: 0 }
        entries.set(entry.id, entry)
        fresh[priority].push(entry)
        wake()
        return Effect.succeed(undefined)
      })
    // Messages due together after `delayMs`, on one timer (as in Redis, one due time for all of a batch).
    const publishLater = (priority: Priority, data: ReadonlyArray<string>, delayMs: number): Effect.Effect<void> =>
      Effect.sync(() => {
        const timer = setTimeout(() => {
          timers.delete(timer)
          Effect.runSync(Effect.forEach(data, (d) => Effect.ignore(publishTo(priority, d)), { discard: true }))
        }, delayMs)
        timer.unref()
        timers.set(timer, data.length)
      })
    const publishRaw = (data: string, publishOptions?: PublishOptions) =>
      publishTo(publishOptions?.priority ?? "normal", data, publishOptions)

    const toDelivery = (e: Entry): Delivery => ({
      id: e.id,
      priority: e.priority,
      deliveryCount: e.deliveries,
      data: e.data,
      message: TaskMessage.decodeJson(e.data)
    })

    const consumer = (consumerOptions: ConsumerOptions = {}) =>
      Effect.gen(function*() {
        const leaseMs = consumerOptions.leaseMs ?? defaults.leaseMs
        const blockMs = consumerOptions.blockMs ?? defaults.blockMs
        const name = `memory-${Math.random().toString(36).slice(2, 8)}`
        let turn = 0

        const take = (max: number): Array<Delivery> => {
          const now = Date.now()
          const out: Array<Delivery> = []
          for (const e of entries.values()) {
            if (out.length >= max) break
            if (e.owner !== undefined && now - e.deliveredAt >= leaseMs) {
              e.owner = name
              e.deliveredAt = now
              e.deliveries++
              out.push(toDelivery(e))
            }
          }
          // As read.lua: higher priorities first, except two reads in eight that start lower.
          const t = turn++ % 8
          const order: ReadonlyArray<Priority> = t === 3 ? ["normal", "low", "high"] : t === 7 ? ["low", "normal", "high"] : priorities
          for (const priority of order) {
            const queue = fresh[priority]
            while (out.length < max && queue.length > 0) {
              const e = queue.shift()!
              if (!entries.has(e.id)) continue
              e.owner = name
              e.deliveredAt = now
              e.deliveries = 1
              out.push(toDelivery(e))
            }
          }
          return out
        }

        // A wake-up clears the read's timer: left to run out, it would hold the finished wait for `blockMs` (one pending
        // timer per read that found nothing at first).
        const waitForWork = Effect.async<void>((resume) => {
          const done = () => {
            clearTimeout(timer)
            resume(Effect.void)
          }
          const timer = setTimeout(() => {
            waiters.delete(done)
            done()
          }, blockMs)
          waiters.add(done)
          return Effect.sync(() => {
            clearTimeout(timer)
            waiters.delete(done)
          })
        })

        const read = (max: number) =>
          Effect.suspend(() => {
            if (max <= 0) return Effect.succeed([] as ReadonlyArray<Delivery>)
            const now = take(max)
            return now.length > 0 ? Effect.succeed(now) : Effect.as(waitForWork, null).pipe(Effect.map(() => take(max)))
          })

        const owned = (id: string) => {
          const e = entries.get(id)
          return e !== undefined && e.owner === name ? e : undefined
        }

        const ack = (d: Delivery) => Effect.sync(() => void entries.delete(d.id))
        const ackMany = (ds: ReadonlyArray<Delivery>) => Effect.sync(() => {
          for (const d of ds) entries.delete(d.id)
        })

        const release = (ds: ReadonlyArray<Delivery>) =>
          Effect.sync(() => {
            for (const d of ds) {
              const e = owned(d.id)
              if (e) e.deliveredAt = 0
            }
            if (ds.length > 0) wake()
          })

        const deadLetter = (d: Delivery, reason: string) =>
          Effect.sync(() => {
            entries.delete(d.id)
            dead.push({
              id: d.id,
              data: d.data ?? "",
              reason,
              taskId: Either.isRight(d.message) ? d.message.right.taskId : d.message.left.taskId,
              deliveries: d.deliveryCount,
              priority: d.priority
            })
          })

        yield* Effect.sync(() => {
          const now = Date.now()
          for (const e of entries.values()) if (e.owner === name) e.deliveredAt = now
        }).pipe(Effect.repeat(Schedule.spaced(Math.max(10, Math.floor(leaseMs / 3)))), Effect.forkScoped)

        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const e of entries.values()) if (e.owner === name) e.deliveredAt = 0
            wake()
          })
        )

        return { name, read, ack, ackMany, release, deadLetter }
      })

    // Removes the selected dead letters (ids not given: the oldest `count`, or all) and returns them.
    const takeDead = (selection: DeadLetterSelection = {}): Array<DeadLetter> => {
      const limit = selection.count === undefined ? Number.POSITIVE_INFINITY : Math.max(0, selection.count)
      const wanted = selection.ids === undefined ? undefined : new Set(selection.ids.slice(0, limit))
      const taken: Array<DeadLetter> = []
      for (let i = 0; i < dead.length && taken.length < limit;) {
        if (wanted === undefined || wanted.has(dead[i]!.id)) taken.push(...dead.splice(i, 1))
        else i++
      }
      return taken
    }

    return Broker.of({
      queueName,
      publish: (message, publishOptions) =>
        Effect.suspend(() =>
          publishTo(publishOptions?.priority ?? priorityOf(message.labels), TaskMessage.encodeJson(message), publishOptions)
        ),
      publishRaw,
      publishManyRaw: (data, priority = "normal", delayMs) =>
        Effect.suspend(() => {
          for (const d of data) {
            const refused = tooLarge(d)
            if (refused !== undefined) return Effect.fail(refused)
          }
          return delayMs === undefined || delayMs <= 0
            ? Effect.forEach(data, (d) => publishTo(priority, d), { discard: true })
            : publishLater(priority, data, delayMs)
        }),
      releaseIdempotencyKeys: (keys) =>
        Effect.sync(() => {
          for (const { key, taskId } of keys) if (idempotencyKeys.get(key)?.taskId === taskId) idempotencyKeys.delete(key)
        }),
      delayedSize: Effect.sync(() => {
        let n = 0
        for (const count of timers.values()) n += count
        return n
      }),
      consumer,
      deadLetters: (count = 100) => Effect.sync(() => dead.slice(0, count)),
      requeueDeadLetters: (selection) =>
        Effect.suspend(() => {
          const taken = takeDead(selection)
          return Effect.as(Effect.forEach(taken, (d) => publishTo(d.priority, d.data), { discard: true }), taken.length)
        }),
      purgeDeadLetters: (selection) => Effect.sync(() => takeDead(selection).length),
      size: Effect.sync(() => entries.size)
    })
  })

/** A layer with a fresh in-memory broker. */
export const layer = (options: MemoryBrokerOptions = {}): Layer.Layer<Broker> => Layer.effect(Broker, make(options))
