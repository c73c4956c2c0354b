/**
 * The worker: a reader fiber pulls at most as many messages as there are free slots into an in-memory
 * queue, and a supervised pool of long-lived slot fibers runs them one after another (no fiber is
 * forked per task: see shared/PERF-NOTES.md). Results are saved before messages are acknowledged.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import { type AckPolicy, Broker, type BrokerError, type Consumer, type Delivery } from "./Broker.js"
import { Executor } from "./Executor.js"
import { type BackendError, ResultBackend } from "./ResultBackend.js"
import * as TaskResult from "./TaskResult.js"

/** Worker settings, with taskiq's and BullMQ's names where they exist. */
export interface WorkerOptions {
  /** Tasks run at once (default 100, taskiq's `--max-async-tasks`). */
  readonly maxAsyncTasks?: number | undefined
  /** When a message is acknowledged (default `when_saved`). */
  readonly ackPolicy?: AckPolicy | undefined
  /** How long running tasks may take to finish at shutdown before they are interrupted (default 5 s). */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /** Deliveries after which a message is dead-lettered (default 5). */
  readonly maxDeliveries?: number | undefined
  /** How long a message stays with a worker that stopped renewing it (default 30 s). */
  readonly leaseMs?: number | undefined
  /** How long an empty read waits (default 1 s). */
  readonly blockMs?: number | undefined
}

/** The resolved defaults. */
export const defaults = {
  maxAsyncTasks: 100,
  ackPolicy: "when_saved" as AckPolicy,
  shutdownTimeout: Duration.seconds(5),
  maxDeliveries: 5
} as const

const poisonResult = (excType: string, detail: string): TaskResult.TaskResult =>
  TaskResult.fail({ excType, excMessage: [detail], excModule: "effect-taskiq" }, 0)

// A saved result is what lets a message go; a transient backend failure is retried before giving up.
const saveRetry = Schedule.exponential("50 millis").pipe(Schedule.intersect(Schedule.recurs(5)))

/** Runs a worker until interrupted; then stops reading, drains within `shutdownTimeout`, and hands back the rest. */
export const run = (options: WorkerOptions = {}): Effect.Effect<never, BrokerError, Broker | ResultBackend | Executor> =>
  Effect.scoped(Effect.gen(function*() {
    const broker = yield* Broker
    const backend = yield* ResultBackend
    const executor = yield* Executor
    const max = Math.max(1, Math.floor(options.maxAsyncTasks ?? defaults.maxAsyncTasks))
    const ackPolicy = options.ackPolicy ?? defaults.ackPolicy
    const maxDeliveries = options.maxDeliveries ?? defaults.maxDeliveries
    const shutdownTimeout = Duration.decode(options.shutdownTimeout ?? defaults.shutdownTimeout)
    const consumer: Consumer = yield* broker.consumer({ leaseMs: options.leaseMs, blockMs: options.blockMs })

    const work = yield* Queue.unbounded<Delivery>()
    const freeSlots = yield* Queue.unbounded<void>()
    yield* Queue.offerAll(freeSlots, Array.from({ length: max }, () => undefined))
    let inFlight = 0
    let onIdle: (() => void) | undefined

    const save = (taskId: string, result: TaskResult.TaskResult): Effect.Effect<void, BackendError> =>
      backend.set(taskId, result).pipe(
        Effect.retry({ schedule: saveRetry, while: (e) => e.reason !== "Encode" })
      )

    const deadLetter = (delivery: Delivery, taskId: string | undefined, excType: string, reason: string) =>
      (taskId === undefined ? Effect.void : Effect.ignore(save(taskId, poisonResult(excType, reason)))).pipe(
        Effect.zipRight(consumer.deadLetter(delivery, reason)),
        Effect.tap(() => Effect.logWarning(`dead-lettered ${delivery.id}: ${reason}`))
      )

    const process = (delivery: Delivery) =>
      Effect.uninterruptibleMask((restore) => {
        if (Either.isLeft(delivery.message)) {
          const e = delivery.message.left
          return deadLetter(delivery, e.taskId, e._tag, e.message)
        }
        const message = delivery.message.right
        if (delivery.deliveryCount > maxDeliveries) {
          return deadLetter(
            delivery,
            message.taskId,
            "MaxDeliveriesExceeded",
            `delivered ${delivery.deliveryCount} times (maxDeliveries ${maxDeliveries}); its workers kept dying or stalling`
          )
        }
        const ackFirst = ackPolicy === "when_received" ? consumer.ack(delivery) : Effect.void
        return ackFirst.pipe(
          Effect.zipRight(restore(executor.execute(message))),
          // Cut short because this worker is shutting down: no result; the consumer hands the message back.
          Effect.tap((execution) =>
            execution.interrupted
              ? Effect.descriptorWith((d) => HashSet.size(d.interruptors) > 0 ? Effect.interrupt : Effect.void)
              : Effect.void
          ),
          Effect.flatMap((execution) => {
            if (execution.poison !== undefined) {
              return Effect.ignore(save(message.taskId, execution.result)).pipe(
                Effect.zipRight(consumer.deadLetter(delivery, execution.poison)),
                Effect.tap(() => Effect.logWarning(`dead-lettered ${delivery.id}: ${execution.poison}`))
              )
            }
            const stored = save(message.taskId, execution.result).pipe(
              Effect.catchTag("BackendError", (e) =>
                e.reason === "Encode"
                  // The value is not serializable: store that as the task's failure instead.
                  ? save(message.taskId, poisonResult("ResultNotSerializable", e.detail))
                  : Effect.fail(e))
            )
            return ackPolicy === "when_saved"
              ? Effect.zipRight(stored, consumer.ack(delivery))
              : ackPolicy === "when_executed"
              ? Effect.zipRight(consumer.ack(delivery), stored)
              : stored
          })
        )
      })

    const slot = Queue.take(work).pipe(
      Effect.flatMap((delivery) =>
        process(delivery).pipe(
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.failCause(cause)
              : Effect.logError(`message ${delivery.id} left pending for another attempt`, cause)
          ),
          Effect.ensuring(Effect.sync(() => {
            freeSlots.unsafeOffer(undefined)
            if (--inFlight === 0 && onIdle !== undefined) onIdle()
          }))
        )
      ),
      Effect.forever
    )

    const readRetry = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))
    const reader = Effect.gen(function*() {
      const free = (yield* Queue.takeBetween(freeSlots, 1, max)).length
      const deliveries = yield* consumer.read(free).pipe(
        Effect.tapError((e) => Effect.logWarning("reading the queue failed; retrying", e)),
        Effect.retry(readRetry),
        Effect.onInterrupt(() => Effect.sync(() => {
          for (let i = 0; i < free; i++) freeSlots.unsafeOffer(undefined)
        }))
      )
      // One synchronous step, so that an interruption never separates counting from queueing.
      yield* Effect.sync(() => {
        inFlight += deliveries.length
        for (const d of deliveries) work.unsafeOffer(d)
        for (let i = deliveries.length; i < free; i++) freeSlots.unsafeOffer(undefined)
      })
    }).pipe(Effect.forever)

    const slots = yield* FiberSet.make()
    for (let i = 0; i < max; i++) yield* FiberSet.run(slots, slot)
    const readerFiber = yield* Effect.forkScoped(reader)

    // Shutdown, in order: stop reading, let what was read finish within the timeout; closing the scope then
    // interrupts the slots, and the consumer hands back whatever is still unacknowledged.
    yield* Effect.addFinalizer(() =>
      Fiber.interrupt(readerFiber).pipe(
        Effect.zipRight(
          Effect.async<void>((resume) => {
            if (inFlight === 0) return resume(Effect.void)
            onIdle = () => resume(Effect.void)
            return Effect.sync(() => (onIdle = undefined))
          }).pipe(
            // Finalizers run uninterruptibly; the wait must still be cut at the shutdown timeout.
            Effect.interruptible,
            Effect.timeout(shutdownTimeout),
            Effect.ignore
          )
        ),
        Effect.zipRight(Effect.suspend(() => {
          const left = inFlight
          return left > 0 ? Effect.logInfo(`shutdown: ${left} unfinished messages handed back`) : Effect.void
        }))
      )
    )

    yield* Effect.logInfo(
      `worker ${consumer.name} consuming "${broker.queueName}" (maxAsyncTasks ${max}, ack ${ackPolicy}, tasks: ${
        executor.taskNames.join(", ")
      })`
    )
    return yield* Effect.never
  }))

/** The worker as a layer: it runs while the layer's scope is open. */
export const layer = (options: WorkerOptions = {}): Layer.Layer<never, never, Broker | ResultBackend | Executor> =>
  Layer.scopedDiscard(
    Effect.forkScoped(
      run(options).pipe(Effect.tapErrorCause((cause) => Effect.logError("worker stopped", cause)))
    )
  )
