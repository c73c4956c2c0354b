/**
 * The worker: a reader fiber pulls at most as many messages as there are free slots (plus `maxPrefetch`)
 * into an in-memory queue, and a supervised pool of long-lived slot fibers runs them one after another (no
 * fiber is forked per task: see shared/PERF-NOTES.md). Results are saved before messages are acknowledged.
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import { type AckPolicy, Broker, BrokerError, type Consumer, type Delivery, idempotencyLabel } from "./Broker.js"
import * as CurrentTask from "./CurrentTask.js"
import { type Execution, Executor } from "./Executor.js"
import { Handoff } from "./internal/handoff.js"
import * as Inbox from "./internal/inbox.js"
import { type BackendError, isPermanent, minCancelTtlMs, ResultBackend } from "./ResultBackend.js"
import * as TaskHandle from "./TaskHandle.js"
import type { TaskMessage } from "./TaskMessage.js"
import * as TaskProgress from "./TaskProgress.js"
import * as TaskResult from "./TaskResult.js"
import * as TaskTracing from "./TaskTracing.js"

/** Worker settings, with taskiq's and BullMQ's names where they exist. */
export interface WorkerOptions {
  /** Tasks run at once (default 100, taskiq's `--max-async-tasks`). */
  readonly maxAsyncTasks?: number | undefined
  /**
   * Messages held beyond those running, read ahead so a slot never waits for Redis (default 0, taskiq's
   * `--max-prefetch`). More throughput for short tasks; but what this worker prefetched, no other worker can take
   * until it runs (or its lease runs out, should this worker die), and a high-priority message published later
   * waits behind it.
   */
  readonly maxPrefetch?: number | undefined
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
  /**
   * A span per run, `taskiq.run <task>`, child of the submitting span named by the message's `traceparent` label
   * (default: whether `TaskTracing` is on where the worker starts; off unless `TaskTracing.layer` is provided).
   */
  readonly tracing?: boolean | undefined
}

/** The resolved defaults. */
export const defaults = {
  maxAsyncTasks: 100,
  maxPrefetch: 0,
  ackPolicy: "when_saved" as AckPolicy,
  shutdownTimeout: Duration.seconds(5),
  maxDeliveries: 5
} as const

// With the message's labels, as every result: they say where the result is pushed (internal/inbox.ts).
const poisonResult = (excType: string, detail: string, labels: TaskResult.TaskResult["labels"] = {}): TaskResult.TaskResult =>
  TaskResult.fail({ excType, excMessage: [detail], excModule: "effect-taskiq" }, 0, labels)

// A saved result is what lets a message go; a transient backend failure is retried before giving up.
const saveRetry = Schedule.exponential("50 millis").pipe(Schedule.intersect(Schedule.recurs(5)))

// Retries `effect` after a failure other than a permanent one; the retry machinery is built only once something failed
// (set up on every save it cost ~10 µs a batch).
const retryTransient = <A>(effect: Effect.Effect<A, BackendError>): Effect.Effect<A, BackendError> =>
  Effect.catchIf(
    effect,
    (e) => !isPermanent(e),
    () => Effect.retry(effect, { schedule: saveRetry, while: (e) => !isPermanent(e) })
  )

const none: ReadonlyArray<Delivery> = []

// Completion scripts a worker has in flight at once (Worker.run's acker).
const ackers = 2

// Resumes after the microtasks and I/O callbacks of this turn of the event loop (setImmediate): every fiber that can run
// without waiting has run by then.
const endOfTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

// Runs `effect` again and again without yielding between runs, as `Effect.forever` does after each (a trip through the
// scheduler, per task, on each of the worker's loops). Each loop suspends on a take or a read whenever it has nothing
// to do, and the runtime still yields a fiber that runs 2,048 operations without suspending.
const loop = <E, R>(effect: Effect.Effect<unknown, E, R>): Effect.Effect<never, E, R> =>
  Effect.zipRight(Effect.whileLoop({ while: () => true, body: () => effect, step: () => {} }), Effect.never)

// A failed run, as its span ends with it: the span's status is an error with the task's error type and message.
class TaskRunFailed extends Error {
  override readonly name = "TaskRunFailed"
  constructor(readonly execution: Execution) {
    const e = execution.result.error
    super(e === null ? "the task failed" : `${e.excType}: ${e.excMessage.join(" ")}`)
  }
}

// Runs `run` in the span of a task's run, `taskiq.run <task>`: a child of the submitting span when the message names
// a valid one, else a trace of its own (never a child of whatever span the worker itself runs in).
const traced = (message: TaskMessage, deliveryCount: number, queueName: string, run: Effect.Effect<Execution>): Effect.Effect<Execution> => {
  const parent = TaskTracing.parse(message.labels[TaskTracing.traceparentLabel])
  return Effect.withSpan(
    Effect.flatMap(run, (execution) => {
      const result = execution.result
      return Effect.zipRight(
        Effect.annotateCurrentSpan({ "taskiq.is_err": result.isErr, "taskiq.execution_time": result.executionTime }),
        result.isErr ? Effect.fail(new TaskRunFailed(execution)) : Effect.succeed(execution)
      )
    }),
    `taskiq.run ${message.taskName}`,
    {
      kind: "consumer",
      ...(Option.isSome(parent) ? { parent: parent.value } : { root: true }),
      attributes: {
        "messaging.system": "taskiq",
        "messaging.destination.name": queueName,
        "messaging.message.id": message.taskId,
        "taskiq.task_name": message.taskName,
        "taskiq.delivery_count": deliveryCount
      }
    }
  ).pipe(Effect.catchAll((failed) => Effect.succeed(failed.execution)))
}

/** A finished task waiting to be saved and acknowledged with others in one round trip each. */
interface Completion {
  readonly delivery: Delivery
  readonly taskId: string
  readonly result: TaskResult.TaskResult
}

/** Runs a worker until interrupted; then stops reading, drains within `shutdownTimeout`, and hands back the rest. */
export const run = (options: WorkerOptions = {}): Effect.Effect<never, BrokerError, Broker | ResultBackend | Executor> =>
  Effect.scoped(Effect.gen(function*() {
    const broker = yield* Broker
    const backend = yield* ResultBackend
    const executor = yield* Executor
    const max = Math.max(1, Math.floor(options.maxAsyncTasks ?? defaults.maxAsyncTasks))
    // Messages this worker may hold at once: one per slot, and the prefetched ones waiting for a slot.
    const capacity = max + Math.max(0, Math.floor(options.maxPrefetch ?? defaults.maxPrefetch))
    const ackPolicy = options.ackPolicy ?? defaults.ackPolicy
    const maxDeliveries = options.maxDeliveries ?? defaults.maxDeliveries
    const shutdownTimeout = Duration.decode(options.shutdownTimeout ?? defaults.shutdownTimeout)
    const tracing = options.tracing ?? (yield* TaskTracing.TaskTracing)
    const consumer: Consumer = yield* broker.consumer({ leaseMs: options.leaseMs, blockMs: options.blockMs })

    // A message holds a place (`room`) from the read until its acknowledgement: so the worker never holds more
    // messages than its slots and prefetch allow, even while finished tasks wait for the acker.
    const work = new Handoff<Delivery>()
    const room = new Handoff<void>()
    const completions = new Handoff<Completion>()
    for (let i = 0; i < capacity; i++) room.offer(undefined)
    let held = 0
    let stopping = false
    // The reader is about to read or waiting on a read: Redis gives it what arrives, so a completion need not read ahead.
    let reading = false
    let onIdle: (() => void) | undefined
    // The places of `freed` messages are free again, except those the messages read ahead (`next`) now hold.
    const settle = (freed: number, next: ReadonlyArray<Delivery>) => {
      for (const d of next) work.offer(d)
      for (let i = next.length; i < freed; i++) room.offer(undefined)
      held += next.length - freed
      if (held === 0 && onIdle !== undefined) onIdle()
    }
    const releaseSlots = (n: number) => settle(n, none)

    const save = (taskId: string, result: TaskResult.TaskResult): Effect.Effect<void, BackendError> =>
      retryTransient(backend.set(taskId, result)).pipe(
        Effect.catchTag("BackendError", (e) =>
          isPermanent(e)
            // The value cannot be stored as it is: store that as the task's failure instead.
            ? save(taskId, poisonResult(e.reason === "TooLarge" ? "ResultTooLarge" : "ResultNotSerializable", e.detail, result.labels))
            : Effect.fail(e))
      )

    const deadLetter = (delivery: Delivery, taskId: string | undefined, result: TaskResult.TaskResult, reason: string) =>
      (taskId === undefined ? Effect.void : Effect.ignore(save(taskId, result))).pipe(
        Effect.zipRight(consumer.deadLetter(delivery, reason)),
        Effect.zipRight(taskId === undefined ? Effect.void : releaseKeys([{ delivery, taskId }])),
        Effect.zipRight(Effect.logWarning(`dead-lettered ${delivery.id}: ${reason}`))
      )

    // Saves a batch of results, then acknowledges their messages (or the other way round for
    // `when_executed`): two round trips for the whole batch, whatever its size.
    const saveAll = (batch: ReadonlyArray<Completion>): Effect.Effect<void, BackendError> =>
      retryTransient(backend.setMany(batch.map((c) => [c.taskId, c.result] as const))).pipe(
        Effect.catchTag("BackendError", (e) =>
          isPermanent(e)
            // One result in the batch cannot be stored as it is: store them one by one.
            ? Effect.forEach(batch, (c) => save(c.taskId, c.result), { discard: true })
            : Effect.fail(e))
      )
    // Finished tasks let their idempotency keys go; a failure only leaves a key to its time to live.
    const releaseKeys = (done: ReadonlyArray<{ readonly delivery: Delivery; readonly taskId: string }>) => {
      let keys: Array<{ key: string; taskId: string }> | undefined
      for (const c of done) {
        const m = c.delivery.message
        const key = Either.isRight(m) ? m.right.labels[idempotencyLabel] : undefined
        if (typeof key === "string") (keys ??= []).push({ key, taskId: c.taskId })
      }
      return keys === undefined
        ? Effect.void
        : broker.releaseIdempotencyKeys(keys).pipe(
          Effect.catchAll((e) => Effect.logWarning("idempotency keys could not be released; they expire on their own", e))
        )
    }
    // Saving then acknowledging is one round trip when the consumer can write the backend's results itself; the
    // same script reads the next messages for the slots the batch frees (`readAhead`), so a busy worker needs no
    // separate read either.
    const store = backend.redisStore
    const fused = ackPolicy === "when_saved" && store !== undefined && consumer.ackWithResults !== undefined
      ? (batch: ReadonlyArray<Completion>, readAhead: number) =>
        Effect.catchAll(consumer.ackWithResults!(batch, store, readAhead), () =>
          Effect.retry(consumer.ackWithResults!(batch, store, readAhead), { schedule: saveRetry }))
      : undefined
    const twoSteps = (batch: ReadonlyArray<Completion>) => {
      const deliveries = batch.map((c) => c.delivery)
      const acked = ackPolicy === "when_received" ? Effect.void : consumer.ackMany(deliveries)
      return ackPolicy === "when_executed" ? Effect.zipRight(acked, saveAll(batch)) : Effect.zipRight(saveAll(batch), acked)
    }
    const complete = (batch: ReadonlyArray<Completion>, readAhead = 0): Effect.Effect<ReadonlyArray<Delivery>, BrokerError | BackendError> =>
      (fused === undefined
        ? Effect.as(twoSteps(batch), none)
        : Effect.flatMap(fused(batch, readAhead), (next) => next !== undefined ? Effect.succeed(next) : Effect.as(twoSteps(batch), none))).pipe(
          Effect.tap(() => releaseKeys(batch))
        )
    // Waits for one completion, then for the end of this turn of the event loop, so that every slot finishing in the
    // same turn joins the batch (yielding once let only those already scheduled join). A batch holds at most half the
    // messages the worker may hold, and two ackers run: while Redis runs one batch's completion script, the worker
    // runs the tasks the other's read ahead. With one acker taking every slot's completion, worker and Redis took
    // turns: a worker draining a backlog runs 1.3–1.7× faster with two (bench/drain.ts, 16 and 100 slots). Prefetched
    // messages keep the slots busy meanwhile anyway: there, batches of half the slots only cost more scripts per task.
    // A completion with no task running and none waiting to start has nothing to wait for: it goes out at once (a lone
    // task's result then reaches Redis a turn earlier, and before the reader's next read).
    const batchSize = Math.min(Math.ceil(capacity / ackers), 1024)
    const gather = (first: Completion) => running.size === 0 && work.size === 0 ? Effect.succeed(first) : Effect.as(endOfTurn, first)
    const acker = completions.take.pipe(
      Effect.flatMap(gather),
      Effect.map((first) => [first, ...completions.takeUpTo(batchSize - 1)]),
      Effect.flatMap((batch) => {
        let next = none
        return complete(batch, stopping || reading ? 0 : batch.length).pipe(
          Effect.tap((read) => Effect.sync(() => (next = read))),
          Effect.catchAllCause((cause) =>
            Effect.logError(`${batch.length} results could not be saved; their messages are handed back for another attempt`, cause)
              .pipe(Effect.zipRight(Effect.ignore(consumer.release(batch.map((c) => c.delivery)))))
          ),
          // Read ahead while the worker began to shut down: handed back, not run.
          Effect.ensuring(Effect.suspend(() =>
            stopping && next.length > 0
              ? Effect.ignore(consumer.release(next)).pipe(Effect.zipRight(Effect.sync(() => settle(batch.length, none))))
              : Effect.sync(() => settle(batch.length, next))
          ))
        )
      }),
      loop
    )

    // Cancellations: ids of cancelled tasks (skipped when read), and the slot fiber running each task (interrupted).
    const cancelled = new Map<string, number>()
    const running = new Map<string, Fiber.RuntimeFiber<unknown, unknown>>()
    const cancelling = new Set<string>()
    const cancels = yield* Queue.unbounded<string>()
    const isCancelled = (taskId: string) => cancelled.size > 0 && cancelled.has(taskId)

    // The per-task steps are functions made once, not closures made per task: tsx compiles with keepNames, which
    // costs every named closure a defineProperty (5 % of a no-op task's CPU in a profile).
    const enqueue = (delivery: Delivery, taskId: string, result: TaskResult.TaskResult) =>
      Effect.sync(() => {
        completions.offer({ delivery, taskId, result })
        return true
      })
    const handBack = (delivery: Delivery, cause: Cause.Cause<unknown>) =>
      Effect.logError(`message ${delivery.id} handed back for another attempt`, cause).pipe(
        Effect.zipRight(Effect.ignore(consumer.release([delivery]))),
        Effect.as(false)
      )
    // What to do with a run's outcome: `true` when its completion went to the acker.
    const afterRun = (
      delivery: Delivery,
      message: TaskMessage,
      exit: Exit.Exit<Execution>
    ): Effect.Effect<boolean, BrokerError> => {
      const taskId = message.taskId
      running.delete(taskId)
      if (cancelling.delete(taskId)) return enqueue(delivery, taskId, TaskHandle.cancelledResult("cancelled while it ran"))
      if (exit._tag === "Failure") return Cause.isInterruptedOnly(exit.cause) ? Effect.succeed(false) : handBack(delivery, exit.cause)
      const execution = exit.value
      if (execution.poison === undefined && execution.retry === undefined && !execution.interrupted) {
        return enqueue(delivery, taskId, execution.result)
      }
      if (execution.poison !== undefined) {
        return Effect.as(deadLetter(delivery, taskId, execution.result, execution.poison), false)
      }
      // Cut short because this worker is shutting down: no result; the consumer hands the message back.
      if (execution.interrupted) {
        return Effect.descriptorWith((d) =>
          HashSet.size(d.interruptors) > 0 ? Effect.succeed(false) : enqueue(delivery, taskId, execution.result)
        )
      }
      // Another attempt later, through the delayed queue: this message is done, its retry is a new one.
      const { delayMs, labels } = execution.retry!
      return broker.publish({ ...message, labels }, { delayMs }).pipe(
        Effect.zipRight(consumer.ack(delivery)),
        Effect.as(false)
      )
    }
    // Frees the slot unless the acker will.
    const settleSlot = (delivery: Delivery, exit: Exit.Exit<boolean, BrokerError>): Effect.Effect<void> =>
      exit._tag === "Success"
        ? exit.value ? Effect.void : Effect.sync(() => releaseSlots(1))
        : Effect.zipRight(handBack(delivery, exit.cause), Effect.sync(() => releaseSlots(1)))

    // Runs one message on a slot fiber that is uninterruptible but for its handler (`restore`), so that the message's
    // place is accounted for exactly once.
    type Execute = Context.Tag.Service<Executor>["execute"]
    type Restore = <A, E, R>(e: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    const start = (
      delivery: Delivery,
      self: Fiber.RuntimeFiber<unknown, unknown>,
      execute: Execute,
      restore: Restore
    ): Effect.Effect<boolean, BrokerError> => {
      if (Either.isLeft(delivery.message)) {
        const e = delivery.message.left
        const labels = e.replyTo === undefined ? {} : { [Inbox.label]: e.replyTo }
        return Effect.as(deadLetter(delivery, e.taskId, poisonResult(e._tag, e.message, labels), e.message), false)
      }
      const message = delivery.message.right
      const taskId = message.taskId
      if (isCancelled(taskId)) return enqueue(delivery, taskId, TaskHandle.cancelledResult("cancelled before it started"))
      if (delivery.deliveryCount > maxDeliveries) {
        const reason = `delivered ${delivery.deliveryCount} times (maxDeliveries ${maxDeliveries}); its workers kept dying or stalling`
        return Effect.as(deadLetter(delivery, taskId, poisonResult("MaxDeliveriesExceeded", reason, message.labels), reason), false)
      }
      running.set(taskId, self)
      const run = tracing
        ? traced(message, delivery.deliveryCount, broker.queueName, execute(message, delivery.deliveryCount))
        : execute(message, delivery.deliveryCount)
      return Effect.flatMap(Effect.exit(restore(run)), (exit) => afterRun(delivery, message, exit))
    }
    const process = (delivery: Delivery, self: Fiber.RuntimeFiber<unknown, unknown>, execute: Execute, restore: Restore) =>
      Effect.flatMap(Effect.exit(Effect.suspend(() => start(delivery, self, execute, restore))), (exit) => settleSlot(delivery, exit))

    // A slot's message holds its place until the acker is done with it, unless it ended another way.
    // Progress goes to this worker's backend, and the handlers' services come from the executor: set once per slot
    // fiber, inherited by what a handler forks. A slot is interruptible only while it waits for work or runs a
    // handler: a message it took is always run or handed back (one region for the slot's life, not one per task).
    const slotLoop = (execute: Execute) =>
      Effect.withFiberRuntime<never, never>((self) =>
        FiberRef.set(TaskProgress.reporterRef, Option.some(backend.setProgress)).pipe(
          Effect.zipRight(CurrentTask.own),
          Effect.zipRight(Effect.uninterruptibleMask((restore) =>
            loop(Effect.flatMap(restore(work.take), (delivery) => process(delivery, self, execute, restore)))
          ))
        )
      )
    const slot = executor.withServices !== undefined ? executor.withServices(slotLoop) : slotLoop(executor.execute)

    const readRetry = Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))
    // Retries after a logged failure; the retry is built only once one happened (Effect.retry on every read cost
    // ≈ 5.5 µs, spent before the next read goes out — on a lone task's way to its completion).
    const retrying = <A>(what: string, effect: Effect.Effect<A, BrokerError>): Effect.Effect<A, BrokerError> => {
      const logged = Effect.tapError(effect, (e) => Effect.logWarning(`${what} failed; retrying`, e))
      return Effect.catchAll(logged, () => Effect.retry(logged, readRetry))
    }
    // Whether the reader's last read gave the slots work.
    let delivered = false
    // Counts what a read gave and queues it in one synchronous step, so that no interruption separates the two; the
    // places it did not fill go back.
    const handOut = (free: number, deliveries: ReadonlyArray<Delivery>) => {
      reading = false
      held += deliveries.length
      delivered = deliveries.length > 0
      for (const d of deliveries) work.offer(d)
      for (let i = deliveries.length; i < free; i++) room.offer(undefined)
      return ackPolicy === "when_received" && deliveries.length > 0
        ? retrying("acknowledging what was read", consumer.ackMany(deliveries))
        : Effect.void
    }
    // Reads for every free place. A read is retried until it succeeds (`reading` stays set meanwhile: completions read
    // nothing ahead), and the reader is interrupted only at shutdown, when places no longer matter: so neither needs a
    // finalizer on the way of each read (a lone task's path runs through one).
    const readFree = Effect.suspend(() => {
      const free = 1 + room.takeUpTo(capacity - 1).length
      return Effect.flatMap(retrying("reading the queue", consumer.read(free)), (deliveries) => handOut(free, deliveries))
    })
    // Places come back a batch at a time: after the first, yield once so the read asks for all of them. After a read
    // that gave work, wait for the end of the turn instead: the tasks it started that finish at once have their
    // completions sent first, so a lone task's result is not queued behind this read on its way to Redis.
    const beforeRead = Effect.suspend(() => {
      reading = true
      return delivered ? endOfTurn : Effect.yieldNow()
    })
    const reader = loop(room.take.pipe(Effect.zipRight(beforeRead), Effect.zipRight(readFree)))

    const fibers = yield* FiberSet.make<never, never>()
    const ackerFiber = yield* Effect.forkScoped(Effect.all(Array.from({ length: ackers }, () => acker), { concurrency: "unbounded", discard: true }))
    for (let i = 0; i < max; i++) yield* FiberSet.run(fibers, slot)

    // A cancelled task that runs here is interrupted where it runs: its slot fiber ends after recording the
    // cancellation, and a new slot takes its place (no fiber is forked per task just to make tasks cancellable).
    const cancelTask = (taskId: string) =>
      Effect.suspend(() => {
        cancelled.set(taskId, Date.now())
        if (cancelled.size > 10_000) {
          const old = Date.now() - minCancelTtlMs
          for (const [id, at] of cancelled) if (at < old) cancelled.delete(id)
        }
        const fiber = running.get(taskId)
        if (fiber === undefined || cancelling.has(taskId)) return Effect.void
        cancelling.add(taskId)
        fiber.unsafeInterruptAsFork(FiberId.none)
        return Effect.asVoid(FiberSet.run(fibers, slot))
      })
    const cancelFiber = yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(cancels), cancelTask)))
    // Before the first read: a task cancelled while no worker ran must not start.
    // A Redis user not allowed to subscribe will never be: that stops the worker, with what to grant.
    yield* backend.watchCancellations((taskId) => cancels.unsafeOffer(taskId)).pipe(
      Effect.tapError((e) => Effect.logWarning("watching for cancellations failed; retrying", e)),
      Effect.retry({
        schedule: Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds"))),
        while: (e) => !e.detail.includes("NOPERM")
      }),
      Effect.mapError((e) =>
        new BrokerError({
          reason: "Connect",
          detail: `${e.detail} (the worker subscribes to channels named __taskiq_*: grant the Redis user &__taskiq_*)`,
          url: e.url,
          queue: broker.queueName
        })
      )
    )
    const readerFiber = yield* Effect.forkScoped(reader)

    // Shutdown, in order: stop reading; let what was read finish within the timeout; interrupt what still
    // runs; save and acknowledge what finished; the consumer's scope then hands back everything else.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        stopping = true
        yield* Fiber.interrupt(readerFiber)
        // Messages read but not started go back at once, for another worker, instead of running late here.
        const unstarted = work.takeAll()
        if (unstarted.length > 0) {
          yield* Effect.ignore(consumer.release(unstarted))
          releaseSlots(unstarted.length)
        }
        yield* Effect.async<void>((resume) => {
          if (held === 0) return resume(Effect.void)
          onIdle = () => resume(Effect.void)
          return Effect.sync(() => (onIdle = undefined))
        }).pipe(
          // Finalizers run uninterruptibly; the wait must still be cut at the shutdown timeout.
          Effect.interruptible,
          Effect.timeout(shutdownTimeout),
          Effect.ignore
        )
        yield* FiberSet.clear(fibers)
        yield* Fiber.interrupt(ackerFiber)
        const finished = completions.takeAll()
        if (finished.length > 0) {
          yield* complete(finished).pipe(Effect.timeout("5 seconds"), Effect.ignoreLogged)
          releaseSlots(finished.length)
        }
        if (held > 0) yield* Effect.logInfo(`shutdown: ${held} unfinished messages handed back`)
      })
    )

    yield* Effect.logInfo(
      `worker ${consumer.name} consuming "${broker.queueName}" (maxAsyncTasks ${max}, maxPrefetch ${capacity - max}, ack ${ackPolicy}${tracing ? ", tracing" : ""}, tasks: ${
        executor.taskNames.join(", ")
      })`
    )
    // The reader, the ackers, the cancellation watcher and the slots run for the worker's life: one that ends (a defect,
    // that is a bug) ends the worker with its cause, so that it is logged and a supervisor restarts it, instead of a
    // worker that looks alive but no longer reads, acknowledges or runs. (A slot interrupted by a cancellation or the
    // shutdown is not an end: FiberSet.join reports failures only.)
    return yield* Effect.raceFirst(
      Effect.raceFirst(Fiber.join(readerFiber), Fiber.join(ackerFiber)),
      Effect.raceFirst(Fiber.join(cancelFiber), FiberSet.join(fibers))
    ).pipe(Effect.zipRight(Effect.never))
  }))

/** The worker as a layer: it runs while the layer's scope is open. */
export const layer = (options: WorkerOptions = {}): Layer.Layer<never, never, Broker | ResultBackend | Executor> =>
  Layer.scopedDiscard(
    Effect.forkScoped(
      run(options).pipe(Effect.tapErrorCause((cause) => Effect.logError("worker stopped", cause)))
    )
  )
