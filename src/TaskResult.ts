/**
 * The outcome of a task as stored by a result backend: taskiq's `TaskiqResult` JSON, field for field.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import type { Labels } from "./TaskMessage.js"

/** The failure of a task as it crossed the process boundary (taskiq's exception representation). */
export interface TaskError {
  /** The error's tag or class name, e.g. `"InsufficientFunds"`, `"TypeError"`, `"TaskTimeout"`. */
  readonly excType: string
  /** The exception's arguments; for errors raised here, `[message]`. */
  readonly excMessage: ReadonlyArray<unknown>
  /** Where the error type lives (`"effect-taskiq"` for our own, a module name for Python producers). */
  readonly excModule: string
  /** The full cause as `Cause.pretty` printed it on the worker, stack included. */
  readonly pretty?: string | undefined
  /** The typed failure encoded with the task's failure Schema, when the task declared one. */
  readonly value?: unknown
  /** Fields other implementations added (e.g. taskiq's `exc_cause`), kept as they came. */
  readonly extra?: Readonly<Record<string, unknown>> | undefined
}

/** A task's result. `returnValue` is `null` when `isErr`; `executionTime` is in seconds, as in taskiq. */
export interface TaskResult<A = unknown> {
  readonly isErr: boolean
  readonly returnValue: A
  readonly error: TaskError | null
  readonly executionTime: number
  readonly labels: Labels
  readonly log: string | null
  readonly extra?: Readonly<Record<string, unknown>> | undefined
}

/** A successful result. */
export const succeed = <A>(returnValue: A, executionTime: number, labels: Labels = {}): TaskResult<A> => ({
  isErr: false,
  returnValue,
  error: null,
  executionTime,
  labels,
  log: null
})

/** A failed result. */
export const fail = (error: TaskError, executionTime: number, labels: Labels = {}): TaskResult<null> => ({
  isErr: true,
  returnValue: null,
  error,
  executionTime,
  labels,
  log: null
})

/** The first string of the error's arguments, or its type: what a human wants to read. */
export const errorMessage = (error: TaskError): string => {
  const first = error.excMessage[0]
  return typeof first === "string" ? first : error.excMessage.length > 0 ? JSON.stringify(error.excMessage) : error.excType
}

const ErrorWire = Schema.Struct({
  exc_type: Schema.String,
  exc_message: Schema.optionalWith(Schema.Array(Schema.Unknown), { default: () => [] }),
  exc_module: Schema.optionalWith(Schema.String, { default: () => "builtins" }),
  exc_pretty: Schema.optional(Schema.String),
  exc_value: Schema.optional(Schema.Unknown)
})

/** The snake-case wire shape, validated once per read. Excess fields are preserved. */
export const TaskResultWire = Schema.Struct({
  is_err: Schema.Boolean,
  log: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
  return_value: Schema.optionalWith(Schema.Unknown, { default: () => null }),
  execution_time: Schema.Number,
  labels: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { default: () => ({}) }),
  error: Schema.optionalWith(Schema.NullOr(ErrorWire), { default: () => null })
})

const validateWire = Schema.decodeUnknownEither(TaskResultWire, { onExcessProperty: "preserve", errors: "first" })

/** A stored result that is not valid JSON or not a taskiq result. */
export class ResultDecodeError extends Schema.TaggedError<ResultDecodeError>()("ResultDecodeError", {
  taskId: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `The stored result of task ${this.taskId} could not be decoded: ${this.detail}`
  }
}

const resultKeys = new Set(["is_err", "log", "return_value", "execution_time", "labels", "error"])
const errorKeys = new Set(["exc_type", "exc_message", "exc_module", "exc_pretty", "exc_value"])

const collectExtra = (o: Record<string, unknown>, known: Set<string>): Record<string, unknown> | undefined => {
  let extra: Record<string, unknown> | undefined
  for (const key in o) if (!known.has(key)) (extra ??= {})[key] = o[key]
  return extra
}

// The waiter's hot path: the same rules as TaskResultWire, checked by hand (a Schema decode allocated a fifth of a
// round trip's memory on the waiting side). Whatever fails here goes through the Schema for its error message.
const isWellFormed = (u: unknown): u is Record<string, unknown> => {
  if (!Predicate.isRecord(u)) return false
  if (typeof u.is_err !== "boolean" || typeof u.execution_time !== "number") return false
  if (u.log !== undefined && u.log !== null && typeof u.log !== "string") return false
  if (u.labels !== undefined && !Predicate.isRecord(u.labels)) return false
  const e = u.error
  if (e === undefined || e === null) return true
  return Predicate.isRecord(e) && typeof e.exc_type === "string" &&
    (e.exc_message === undefined || Array.isArray(e.exc_message)) &&
    (e.exc_module === undefined || typeof e.exc_module === "string") &&
    (e.exc_pretty === undefined || typeof e.exc_pretty === "string")
}

/** Decodes the JSON text of a stored result. */
export const decodeJson = (taskId: string, json: string): Either.Either<TaskResult, ResultDecodeError> => {
  let u: unknown
  try {
    u = JSON.parse(json)
  } catch (e) {
    return Either.left(new ResultDecodeError({ taskId, detail: `invalid JSON: ${(e as Error).message}` }))
  }
  if (isWellFormed(u)) return Either.right(fromWire(u))
  const parsed = validateWire(u)
  if (Either.isLeft(parsed)) {
    return Either.left(new ResultDecodeError({ taskId, detail: ParseResult.TreeFormatter.formatErrorSync(parsed.left) }))
  }
  return Either.right(fromWire(parsed.right as Record<string, unknown>))
}

// Builds the result from a well-formed wire object; defaults as TaskResultWire's.
const fromWire = (w: Record<string, unknown>): TaskResult => {
  const e = w.error as Record<string, unknown> | null | undefined
  let error: TaskError | null = null
  if (e !== null && e !== undefined) {
    const err: { -readonly [K in keyof TaskError]: TaskError[K] } = {
      excType: e.exc_type as string,
      excMessage: (e.exc_message ?? []) as ReadonlyArray<unknown>,
      excModule: (e.exc_module ?? "builtins") as string
    }
    if (e.exc_pretty !== undefined) err.pretty = e.exc_pretty as string
    if (e.exc_value !== undefined) err.value = e.exc_value
    const extra = collectExtra(e, errorKeys)
    if (extra !== undefined) err.extra = extra
    error = err
  }
  const result: { -readonly [K in keyof TaskResult]: TaskResult[K] } = {
    isErr: w.is_err as boolean,
    returnValue: w.return_value === undefined ? null : w.return_value,
    error,
    executionTime: w.execution_time as number,
    labels: (w.labels ?? {}) as Labels,
    log: (w.log ?? null) as string | null
  }
  const extra = collectExtra(w, resultKeys)
  if (extra !== undefined) result.extra = extra
  return result
}

// Bytes labels travel as base64 text in results, as they do in messages.
const jsonLabels = (labels: Labels): Labels => {
  for (const key in labels) {
    if (labels[key] instanceof Uint8Array) {
      const out: Record<string, unknown> = {}
      for (const k in labels) {
        const v = labels[k]
        out[k] = v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v
      }
      return out as Labels
    }
  }
  return labels
}

/** Encodes a result to its wire JSON text. `returnValue` must already be JSON-safe (Schema-encoded). */
export const encodeJson = (result: TaskResult): string =>
  JSON.stringify({
    ...result.extra,
    is_err: result.isErr,
    log: result.log,
    return_value: result.returnValue === undefined ? null : result.returnValue,
    execution_time: result.executionTime,
    labels: jsonLabels(result.labels),
    error: result.error === null ? null : {
      ...result.error.extra,
      exc_type: result.error.excType,
      exc_message: result.error.excMessage,
      exc_module: result.error.excModule,
      ...(result.error.pretty === undefined ? undefined : { exc_pretty: result.error.pretty }),
      ...(result.error.value === undefined ? undefined : { exc_value: result.error.value })
    }
  })
