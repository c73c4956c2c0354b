import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as TaskResult from "../src/TaskResult.js"

// What Python taskiq 0.11 with the JSON serializer stores under the result key.
const okJson = `{"is_err":false,"log":null,"return_value":3,"execution_time":0.01,"labels":{},"error":null}`
const errJson = `{"is_err":true,"log":null,"return_value":null,"execution_time":0.02,"labels":{"retry":"1"},` +
  `"error":{"exc_type":"ValueError","exc_message":["bad"],"exc_module":"builtins",` +
  `"exc_cause":null,"exc_context":null,"exc_suppress_context":false}}`

const taskId = "0123456789abcdef0123456789abcdef"

const decodeOk = (json: string): TaskResult.TaskResult => {
  const r = TaskResult.decodeJson(taskId, json)
  if (Either.isLeft(r)) assert.fail(`expected a result, got ${r.left.message}`)
  return r.right
}

const decodeErr = (json: string): TaskResult.ResultDecodeError => {
  const r = TaskResult.decodeJson(taskId, json)
  if (Either.isRight(r)) assert.fail(`expected a decode error, got ${JSON.stringify(r.right)}`)
  return r.left
}

const error = (o: Partial<TaskResult.TaskError> = {}): TaskResult.TaskError => ({
  excType: "ValueError",
  excMessage: ["bad"],
  excModule: "builtins",
  ...o
})

describe("TaskResult", () => {
  describe("decode taskiq's JSON", () => {
    it("reads a success", () => {
      const r = decodeOk(okJson)
      assert.strictEqual(r.isErr, false)
      assert.strictEqual(r.returnValue, 3)
      assert.strictEqual(r.executionTime, 0.01)
      assert.isNull(r.error)
      assert.isNull(r.log)
      assert.deepStrictEqual(r.labels, {})
      assert.isUndefined(r.extra)
    })

    it("reads an error, keeping taskiq's extra exception fields", () => {
      const r = decodeOk(errJson)
      assert.strictEqual(r.isErr, true)
      assert.isNull(r.returnValue)
      assert.strictEqual(r.executionTime, 0.02)
      assert.deepStrictEqual(r.labels, { retry: "1" })
      assert.isNotNull(r.error)
      const e = r.error!
      assert.strictEqual(e.excType, "ValueError")
      assert.deepStrictEqual(e.excMessage, ["bad"])
      assert.strictEqual(e.excModule, "builtins")
      assert.isUndefined(e.pretty)
      assert.isUndefined(e.value)
      assert.deepStrictEqual(e.extra, { exc_cause: null, exc_context: null, exc_suppress_context: false })
    })

    it("reads our own error fields exc_pretty and exc_value", () => {
      const json = JSON.stringify({
        is_err: true,
        return_value: null,
        execution_time: 1,
        error: {
          exc_type: "InsufficientFunds",
          exc_message: ["need 5"],
          exc_module: "js",
          exc_pretty: "InsufficientFunds: need 5\n    at ...",
          exc_value: { _tag: "InsufficientFunds", needed: 5 }
        }
      })
      const e = decodeOk(json).error!
      assert.strictEqual(e.pretty, "InsufficientFunds: need 5\n    at ...")
      assert.deepStrictEqual(e.value, { _tag: "InsufficientFunds", needed: 5 })
      assert.isUndefined(e.extra)
    })

    it("defaults a missing log, return_value, labels, error, exc_message and exc_module", () => {
      const r = decodeOk(`{"is_err":false,"execution_time":0}`)
      assert.isNull(r.log)
      assert.isNull(r.returnValue)
      assert.deepStrictEqual(r.labels, {})
      assert.isNull(r.error)
      const e = decodeOk(`{"is_err":true,"execution_time":0,"error":{"exc_type":"KeyError"}}`).error!
      assert.deepStrictEqual(e.excMessage, [])
      assert.strictEqual(e.excModule, "builtins")
    })

    it("keeps a log string", () => {
      assert.strictEqual(decodeOk(`{"is_err":false,"execution_time":0,"log":"hello"}`).log, "hello")
    })
  })

  describe("round trip", () => {
    it("decode → encode gives back taskiq's success JSON", () => {
      assert.deepStrictEqual(JSON.parse(TaskResult.encodeJson(decodeOk(okJson))), JSON.parse(okJson))
    })

    it("decode → encode gives back taskiq's error JSON, extra exception fields included", () => {
      assert.deepStrictEqual(JSON.parse(TaskResult.encodeJson(decodeOk(errJson))), JSON.parse(errJson))
    })

    it("decode → encode preserves unknown fields of the result and of the error", () => {
      const wire = {
        is_err: true,
        log: null,
        return_value: null,
        execution_time: 0.5,
        labels: { a: "b" },
        worker: "w-1",
        attempts: [1, 2],
        error: {
          exc_type: "ValueError",
          exc_message: ["bad", 2],
          exc_module: "builtins",
          exc_cause: { exc_type: "KeyError", exc_message: ["k"] },
          exc_notes: ["a note"]
        }
      }
      const r = decodeOk(JSON.stringify(wire))
      assert.deepStrictEqual(r.extra, { worker: "w-1", attempts: [1, 2] })
      assert.deepStrictEqual(r.error!.extra, {
        exc_cause: { exc_type: "KeyError", exc_message: ["k"] },
        exc_notes: ["a note"]
      })
      assert.deepStrictEqual(JSON.parse(TaskResult.encodeJson(r)), wire)
    })

    it("encode → decode gives back a failed result with pretty and value", () => {
      const r = TaskResult.fail(
        error({ excType: "Boom", excModule: "js", pretty: "Boom: x", value: { _tag: "Boom", n: 1 } }),
        0.125,
        { retry: 2 }
      )
      const json = TaskResult.encodeJson(r)
      const wire = JSON.parse(json)
      assert.strictEqual(wire.error.exc_pretty, "Boom: x")
      assert.deepStrictEqual(wire.error.exc_value, { _tag: "Boom", n: 1 })
      assert.deepStrictEqual(decodeOk(json), r)
    })

    it("encodes an undefined return value as null and leaves pretty/value off when absent", () => {
      const wire = JSON.parse(TaskResult.encodeJson(TaskResult.succeed(undefined, 0)))
      assert.isTrue("return_value" in wire)
      assert.isNull(wire.return_value)
      const errWire = JSON.parse(TaskResult.encodeJson(TaskResult.fail(error(), 0)))
      assert.deepStrictEqual(Object.keys(errWire.error).sort(), ["exc_message", "exc_module", "exc_type"])
    })
  })

  describe("constructors", () => {
    it("succeed makes a success with taskiq's field values", () => {
      const r = TaskResult.succeed({ a: 1 }, 0.25, { who: "me" })
      assert.deepStrictEqual(r, {
        isErr: false,
        returnValue: { a: 1 },
        error: null,
        executionTime: 0.25,
        labels: { who: "me" },
        log: null
      })
      assert.deepStrictEqual(JSON.parse(TaskResult.encodeJson(r)), {
        is_err: false,
        log: null,
        return_value: { a: 1 },
        execution_time: 0.25,
        labels: { who: "me" },
        error: null
      })
    })

    it("succeed defaults labels to {}", () => {
      assert.deepStrictEqual(TaskResult.succeed(1, 0).labels, {})
    })

    it("fail makes an error result with a null return value", () => {
      const e = error()
      const r = TaskResult.fail(e, 1.5)
      assert.strictEqual(r.isErr, true)
      assert.isNull(r.returnValue)
      assert.strictEqual(r.error, e)
      assert.strictEqual(r.executionTime, 1.5)
      assert.deepStrictEqual(r.labels, {})
      assert.isNull(r.log)
      assert.deepStrictEqual(JSON.parse(TaskResult.encodeJson(r)), {
        is_err: true,
        log: null,
        return_value: null,
        execution_time: 1.5,
        labels: {},
        error: { exc_type: "ValueError", exc_message: ["bad"], exc_module: "builtins" }
      })
    })
  })

  describe("errorMessage", () => {
    it("is the first argument when it is a string", () => {
      assert.strictEqual(TaskResult.errorMessage(error({ excMessage: ["bad value", 2] })), "bad value")
    })

    it("is the arguments as JSON when the first is not a string", () => {
      assert.strictEqual(TaskResult.errorMessage(error({ excMessage: [404, "x"] })), "[404,\"x\"]")
    })

    it("is the type when there are no arguments", () => {
      assert.strictEqual(TaskResult.errorMessage(error({ excType: "StopIteration", excMessage: [] })), "StopIteration")
    })
  })

  describe("the hand-checked fast path", () => {
    // decodeJson checks the common shape by hand and only falls back to TaskResultWire: both must agree on what is
    // valid, and valid results must come out the same either way.
    const viaSchema = (json: string) => {
      const r = Schema.decodeUnknownEither(TaskResult.TaskResultWire, { onExcessProperty: "preserve" })(JSON.parse(json))
      return Either.isRight(r)
    }
    const cases = [
      okJson,
      errJson,
      `{"is_err":false,"execution_time":0}`,
      `{"is_err":false,"execution_time":1.5,"log":"line","labels":{"a":{"b":[1]}},"extra_field":[1,2]}`,
      `{"is_err":true,"execution_time":0,"error":{"exc_type":"E"}}`,
      `{"is_err":true,"execution_time":0,"error":{"exc_type":"E","exc_pretty":"trace","exc_value":{"_tag":"E"}}}`,
      `{"is_err":true,"execution_time":0,"error":{"exc_type":"E","exc_pretty":null}}`,
      `{"is_err":true,"execution_time":0,"error":{"exc_type":"E","exc_module":7}}`,
      `{"is_err":false,"execution_time":0,"labels":null}`,
      `{"is_err":false,"execution_time":0,"log":null,"return_value":null,"error":null}`
    ]
    it("accepts exactly what the wire Schema accepts", () => {
      for (const json of cases) assert.strictEqual(Either.isRight(TaskResult.decodeJson(taskId, json)), viaSchema(json), json)
    })
    it("fills the same defaults and keeps the extra fields", () => {
      assert.deepStrictEqual(decodeOk(`{"is_err":false,"execution_time":0,"x":1}`), {
        isErr: false,
        returnValue: null,
        error: null,
        executionTime: 0,
        labels: {},
        log: null,
        extra: { x: 1 }
      })
      assert.deepStrictEqual(decodeOk(`{"is_err":true,"execution_time":0,"error":{"exc_type":"E","y":2}}`).error, {
        excType: "E",
        excMessage: [],
        excModule: "builtins",
        extra: { y: 2 }
      })
    })
  })

  describe("decode errors", () => {
    it("bad JSON is a ResultDecodeError naming the task", () => {
      const e = decodeErr("{\"is_err\": tru")
      assert.strictEqual(e._tag, "ResultDecodeError")
      assert.strictEqual(e.taskId, taskId)
      assert.include(e.detail, "invalid JSON")
      assert.include(e.message, taskId)
    })

    it("a wrong shape is a ResultDecodeError", () => {
      for (
        const json of [
          "null",
          "[]",
          "\"ok\"",
          `{"log":null,"return_value":3,"execution_time":0.01}`, // no is_err
          `{"is_err":"false","execution_time":0.01}`, // is_err not a boolean
          `{"is_err":false}`, // no execution_time
          `{"is_err":false,"execution_time":"fast"}`,
          `{"is_err":false,"execution_time":0,"log":5}`,
          `{"is_err":false,"execution_time":0,"labels":[]}`,
          `{"is_err":true,"execution_time":0,"error":"boom"}`,
          `{"is_err":true,"execution_time":0,"error":{"exc_message":["no type"]}}`,
          `{"is_err":true,"execution_time":0,"error":{"exc_type":"E","exc_message":"not a list"}}`
        ]
      ) {
        const e = decodeErr(json)
        assert.strictEqual(e._tag, "ResultDecodeError", json)
        assert.strictEqual(e.taskId, taskId, json)
        assert.isAbove(e.detail.length, 0, json)
      }
    })
  })
})
