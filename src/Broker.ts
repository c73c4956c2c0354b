/**
 * The Broker port: publishes task messages and hands them to consumers with at-least-once delivery.
 * Implementations: `Broker/Redis.ts` (Redis Streams, the default) and `Broker/Memory.ts`.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { Finished, RedisResultStore } from "./internal/redisResultStore.js"
import type { MessageDecodeError, TaskMessage } from "./TaskMessage.js"

/** Why a broker operation failed. `url` is always redacted. */
export class BrokerError extends Schema.TaggedError<BrokerError>()("BrokerError", {
  reason: Schema.Literal("Connect", "Publish", "Read", "Ack", "Config", "MessageTooLarge"),
  detail: Schema.String,
  url: Schema.optional(Schema.String),
  queue: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    const where = [this.url && `url ${this.url}`, this.queue && `queue ${this.queue}`].filter(Boolean).join(", ")
    return `Broker ${this.reason} failed${where ? ` (${where})` : ""}: ${this.detail}`
  }
}

/** When a worker acknowledges a message (taskiq's `--ack-type`). */
export type AckPolicy = "when_received" | "when_executed" | "when_saved"

/** Priorities: whenever tasks of several wait, higher ones are read first (lower ones still get a share). */
export type Priority = "high" | "normal" | "low"

/** The priorities, highest first. */
export const priorities: ReadonlyArray<Priority> = ["high", "normal", "low"]

/** The message label that carries a priority (as taskiq's brokers that support priorities name it). */
export const priorityLabel = "priority"

/** A message's priority from its labels; anything unknown is `normal`. */
export const priorityOf = (labels: Readonly<Record<string, unknown>>): Priority => {
  const p = labels[priorityLabel]
  return p === "high" || p === "low" ? p : "normal"
}

/**
 * The label naming a submission's idempotency key while its task holds it until it finishes: the worker
 * releases the key when the task is done.
 */
export const idempotencyLabel = "idempotency_key"

/** One delivery of a message to a consumer. The message is decoded once, by the broker. */
export interface Delivery {
  /** The broker's id for this entry (the Redis stream entry id, unique within its priority). */
  readonly id: string
  /** The priority it was queued with. */
  readonly priority: Priority
  /** 1 on the first delivery; grows each time the message is reclaimed from a dead or stalled consumer. */
  readonly deliveryCount: number
  /** The raw payload, kept for dead-lettering. */
  readonly data: string | undefined
  readonly message: Either.Either<TaskMessage, MessageDecodeError>
}

/** A consumer's view of the queue; its scope releases whatever it still holds, so nothing waits for a lease. */
export interface Consumer {
  readonly name: string
  /** Up to `max` deliveries; waits a short while when the queue is empty and may return none. */
  readonly read: (max: number) => Effect.Effect<ReadonlyArray<Delivery>, BrokerError>
  /** The message is done: it leaves the queue for good. */
  readonly ack: (delivery: Delivery) => Effect.Effect<void, BrokerError>
  /** Several messages are done, in one round trip. */
  readonly ackMany: (deliveries: ReadonlyArray<Delivery>) => Effect.Effect<void, BrokerError>
  /** Hands messages back unfinished so that any consumer can take them at once (or, failing that, after their lease). */
  readonly release: (deliveries: ReadonlyArray<Delivery>) => Effect.Effect<void, BrokerError>
  /** Moves a message to the dead-letter queue with the reason, and acknowledges it. */
  readonly deadLetter: (delivery: Delivery, reason: string) => Effect.Effect<void, BrokerError>
  /**
   * Internal: saves results into a Redis result store on this consumer's own connection and acknowledges their
   * messages after them, in one round trip, and reads up to `readAhead` new messages in the same script (for the
   * slots the batch frees). `undefined` (nothing done) when it cannot: another connection, or a result that
   * cannot be encoded — then the caller saves and acknowledges the usual way.
   */
  readonly ackWithResults?: (
    batch: ReadonlyArray<Finished<Delivery>>,
    store: RedisResultStore,
    readAhead?: number
  ) => Effect.Effect<ReadonlyArray<Delivery> | undefined, BrokerError>
}

/** Options for a consumer. */
export interface ConsumerOptions {
  /** How long a delivered message stays with a consumer that stops renewing it (default 30 s). */
  readonly leaseMs?: number | undefined
  /** How long an empty read waits for work (default 1 s). */
  readonly blockMs?: number | undefined
  /** Longest sleep of the delayed-message mover between looks when no producer wakes it (default 1 s). */
  readonly delayedPollMs?: number | undefined
}

/** A dead-lettered message, as an operator sees it. */
export interface DeadLetter {
  readonly id: string
  readonly data: string
  readonly reason: string
  readonly taskId: string | undefined
  readonly deliveries: number
  /** The priority it is requeued with. */
  readonly priority: Priority
}

/** Which dead letters `requeueDeadLetters` / `purgeDeadLetters` act on; none given means all of them. */
export interface DeadLetterSelection {
  /** These dead-letter ids only; ids that are not (or no longer) dead letters are skipped. */
  readonly ids?: ReadonlyArray<string> | undefined
  /** At most this many, oldest first (when `ids` is given, the first `count` of them). Default: no limit. */
  readonly count?: number | undefined
}

/** Per-message publishing options. */
export interface PublishOptions {
  /** Deliver no sooner than this many milliseconds from now (by the broker's clock). */
  readonly delayMs?: number | undefined
  /** The message's priority (default: its `priority` label, else `normal`). */
  readonly priority?: Priority | undefined
  /** Publish only if no other task holds this key; atomically with the publish. */
  readonly idempotency?: Idempotency | undefined
}

/** An idempotency key taken at publish. */
export interface Idempotency {
  readonly key: string
  /** The task that will hold the key. */
  readonly taskId: string
  /** How long the key is held, ms (until the task finishes, when its message carries `idempotency_key`). */
  readonly ttlMs: number
}

/** The longest an idempotency key is held when it is meant to be held until its task finishes. */
export const defaultIdempotencyTtlMs = 24 * 3_600_000

/** The broker service. */
export class Broker extends Context.Tag("effect-taskiq/Broker")<Broker, {
  readonly queueName: string
  /**
   * Publishes a message (now, or after `delayMs`); resolves once the broker has stored it. With an idempotency
   * key held by another task, publishes nothing and returns that task's id.
   */
  readonly publish: (message: TaskMessage, options?: PublishOptions) => Effect.Effect<string | undefined, BrokerError>
  /** Publishes raw payload text as another producer would (tests, replays). */
  readonly publishRaw: (data: string, options?: PublishOptions) => Effect.Effect<string | undefined, BrokerError>
  /**
   * Publishes many payloads of one priority at once (a bulk submission: one round trip), now or all after `delayMs`;
   * all or, on a size error, none of them.
   */
  readonly publishManyRaw: (
    data: ReadonlyArray<string>,
    priority?: Priority,
    delayMs?: number
  ) => Effect.Effect<void, BrokerError>
  /** Lets these tasks' idempotency keys go (each only if that task still holds it). */
  readonly releaseIdempotencyKeys: (
    keys: ReadonlyArray<{ readonly key: string; readonly taskId: string }>
  ) => Effect.Effect<void, BrokerError>
  /** Messages scheduled for later and not yet due. */
  readonly delayedSize: Effect.Effect<number, BrokerError>
  readonly consumer: (options?: ConsumerOptions) => Effect.Effect<Consumer, BrokerError, Scope.Scope>
  /** The dead-lettered messages, oldest first. */
  readonly deadLetters: (count?: number) => Effect.Effect<ReadonlyArray<DeadLetter>, BrokerError>
  /**
   * Moves dead letters back into the queue, each atomically (its original payload is published again and its
   * delivery count starts over); returns how many moved.
   */
  readonly requeueDeadLetters: (options?: DeadLetterSelection) => Effect.Effect<number, BrokerError>
  /** Deletes dead letters for good; returns how many were deleted. With no options, all of them. */
  readonly purgeDeadLetters: (options?: DeadLetterSelection) => Effect.Effect<number, BrokerError>
  /** Messages waiting or running (not yet acknowledged), of every priority. */
  readonly size: Effect.Effect<number, BrokerError>
}>() {}

/** The default lease and empty-read wait. */
export const defaults = { leaseMs: 30_000, blockMs: 1_000 } as const
