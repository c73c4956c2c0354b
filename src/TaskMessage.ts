/**
 * The task message as it travels through a broker: taskiq's `TaskiqMessage` JSON, field for field.
 */
import { randomUUID } from "node:crypto"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

/** A label value as the TypeScript API sees it; the wire carries strings with a type code. */
export type LabelValue = string | number | boolean | Uint8Array | null | ReadonlyArray<unknown> | { readonly [k: string]: unknown }

/** Labels attached to a task: routing hints, retry counters, anything a middleware needs. */
export type Labels = Readonly<Record<string, LabelValue>>

/** A task message in camel case. `extra` keeps fields other producers added, so nothing is dropped. */
export interface TaskMessage {
  readonly taskId: string
  readonly taskName: string
  readonly labels: Labels
  readonly args: ReadonlyArray<unknown>
  readonly kwargs: Readonly<Record<string, unknown>>
  readonly extra?: Readonly<Record<string, unknown>> | undefined
}

/** taskiq's label type codes (`taskiq.labels.LabelType`). */
export const LabelType = { ANY: 1, INT: 2, STR: 3, FLOAT: 4, BOOL: 5, BYTES: 6 } as const

/** The 32 lower-case hex digits of a uuid4 without dashes, as taskiq's default id generator makes. */
export const TaskId = Schema.String.pipe(
  Schema.pattern(/^[0-9a-f]{32}$/, { message: () => "task_id must be 32 lower-case hex digits (a uuid4 without dashes)" })
)

/** The snake-case wire shape, validated once per message. Excess fields are preserved. */
export const TaskMessageWire = Schema.Struct({
  task_id: TaskId,
  task_name: Schema.String.pipe(Schema.minLength(1)),
  labels: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { default: () => ({}) }),
  labels_types: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.Number }))),
  args: Schema.optionalWith(Schema.Array(Schema.Unknown), { default: () => [] }),
  kwargs: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { default: () => ({}) })
})

/** A new task id. */
export const makeTaskId = (): string => {
  // taskiq's uuid4().hex; slicing around the four dashes is cheaper than a global replace.
  const u = randomUUID()
  return u.slice(0, 8) + u.slice(9, 13) + u.slice(14, 18) + u.slice(19, 23) + u.slice(24)
}

const knownKeys = new Set(["task_id", "task_name", "labels", "labels_types", "args", "kwargs"])
const validateWire = Schema.decodeUnknownEither(TaskMessageWire, { onExcessProperty: "preserve", errors: "first" })

const parseLabel = (value: unknown, code: number | undefined): LabelValue => {
  if (code === undefined || typeof value !== "string") return value as LabelValue
  switch (code) {
    case LabelType.INT:
    case LabelType.FLOAT: {
      const n = Number(value)
      return Number.isNaN(n) ? value : n
    }
    case LabelType.BOOL:
      return value.toLowerCase() === "true"
    case LabelType.BYTES:
      return new Uint8Array(Buffer.from(value, "base64"))
    default:
      return value
  }
}

/**
 * Why a message could not be decoded; `taskId` is set when the id itself was readable, `replyTo` when its `reply_to`
 * label was (so the error result reaches a waiter on that inbox too).
 */
export class MessageDecodeError extends Schema.TaggedError<MessageDecodeError>()("MessageDecodeError", {
  reason: Schema.Literal("InvalidJson", "InvalidShape", "Unsigned", "BadSignature", "TooLarge"),
  detail: Schema.String,
  taskId: Schema.optional(Schema.String),
  replyTo: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `Undecodable task message (${this.reason}): ${this.detail}`
  }
}

const taskIdPattern = /^[0-9a-f]{32}$/

const readableTaskId = (u: unknown): string | undefined =>
  Predicate.isRecord(u) && typeof u.task_id === "string" && taskIdPattern.test(u.task_id) ? u.task_id : undefined

const readableReplyTo = (u: unknown): string | undefined =>
  Predicate.isRecord(u) && Predicate.isRecord(u.labels) && typeof u.labels.reply_to === "string" ? u.labels.reply_to : undefined

// The hot path: the same rules as TaskMessageWire, checked by hand (a Schema decode per message costs more
// than the rest of a no-op task). Whatever fails here goes through the Schema for its error message.
const isWellFormed = (u: unknown): u is typeof TaskMessageWire.Encoded => {
  if (!Predicate.isRecord(u)) return false
  if (typeof u.task_id !== "string" || !taskIdPattern.test(u.task_id)) return false
  if (typeof u.task_name !== "string" || u.task_name.length === 0) return false
  if (u.labels !== undefined && !Predicate.isRecord(u.labels)) return false
  if (u.args !== undefined && !Array.isArray(u.args)) return false
  if (u.kwargs !== undefined && !Predicate.isRecord(u.kwargs)) return false
  const types = u.labels_types
  if (types !== undefined && types !== null) {
    if (!Predicate.isRecord(types)) return false
    for (const key in types) if (typeof types[key] !== "number") return false
  }
  return true
}

/** Decodes an already-parsed JSON value into a TaskMessage. */
export const decodeUnknown = (u: unknown): Either.Either<TaskMessage, MessageDecodeError> => {
  if (isWellFormed(u)) return Either.right(fromWire(u as Record<string, unknown>))
  const parsed = validateWire(u)
  if (Either.isLeft(parsed)) {
    return Either.left(
      new MessageDecodeError({
        reason: "InvalidShape",
        detail: ParseResult.TreeFormatter.formatErrorSync(parsed.left),
        taskId: readableTaskId(u),
        replyTo: readableReplyTo(u)
      })
    )
  }
  return Either.right(fromWire(parsed.right as Record<string, unknown>))
}

const fromWire = (w: Record<string, unknown>): TaskMessage => {
  const rawLabels = (w.labels ?? {}) as Record<string, unknown>
  const types = w.labels_types as Record<string, number> | null | undefined
  let labels = rawLabels as Labels
  if (types) {
    const out: Record<string, LabelValue> = {}
    for (const key in rawLabels) out[key] = parseLabel(rawLabels[key], types[key])
    labels = out
  }
  let extra: Record<string, unknown> | undefined
  for (const key in w) {
    if (!knownKeys.has(key)) (extra ??= {})[key] = w[key]
  }
  return {
    taskId: w.task_id as string,
    taskName: w.task_name as string,
    labels,
    args: (w.args ?? []) as ReadonlyArray<unknown>,
    kwargs: (w.kwargs ?? {}) as Record<string, unknown>,
    extra
  }
}

/** Decodes the JSON text of a stream entry's `data` field. */
export const decodeJson = (json: string): Either.Either<TaskMessage, MessageDecodeError> => {
  let u: unknown
  try {
    u = JSON.parse(json)
  } catch (e) {
    return Either.left(new MessageDecodeError({ reason: "InvalidJson", detail: String((e as Error).message ?? e) }))
  }
  return decodeUnknown(u)
}

/** Encodes labels the way taskiq's kicker does: strings on the wire, their types in `labels_types`. */
export const encodeLabels = (labels: Labels): { labels: Record<string, unknown>; labels_types: Record<string, number> } => {
  const out: Record<string, unknown> = {}
  const types: Record<string, number> = {}
  for (const key in labels) {
    const v = labels[key]
    if (typeof v === "string") {
      out[key] = v
      types[key] = LabelType.STR
    } else if (typeof v === "number") {
      out[key] = String(v)
      types[key] = Number.isInteger(v) ? LabelType.INT : LabelType.FLOAT
    } else if (typeof v === "boolean") {
      out[key] = v ? "True" : "False"
      types[key] = LabelType.BOOL
    } else if (v instanceof Uint8Array) {
      out[key] = Buffer.from(v).toString("base64")
      types[key] = LabelType.BYTES
    } else {
      // Structured values travel as JSON without a type code; taskiq leaves untyped labels as they are.
      out[key] = v
    }
  }
  return { labels: out, labels_types: types }
}

/** Encodes a TaskMessage to its wire JSON text. */
export const encodeJson = (message: TaskMessage): string => {
  const { labels, labels_types } = encodeLabels(message.labels)
  return JSON.stringify({
    ...message.extra,
    task_id: message.taskId,
    task_name: message.taskName,
    labels,
    labels_types,
    args: message.args,
    kwargs: message.kwargs
  })
}
