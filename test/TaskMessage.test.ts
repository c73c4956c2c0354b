import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as TaskMessage from "../src/TaskMessage.js"

// What Python taskiq 0.11 with the JSON serializer writes in a stream entry's `data` field.
const taskId = "0123456789abcdef0123456789abcdef"
const taskiqJson = `{"task_id":"${taskId}","task_name":"my.add",` +
  `"labels":{"retry":"3","flag":"True","ratio":"0.5","name":"x","raw":"aGk="},` +
  `"labels_types":{"retry":2,"flag":5,"ratio":4,"name":3,"raw":6},"args":[1,2],"kwargs":{}}`

const decodeOk = (json: string): TaskMessage.TaskMessage => {
  const r = TaskMessage.decodeJson(json)
  if (Either.isLeft(r)) assert.fail(`expected a message, got ${r.left.message}`)
  return r.right
}

const decodeErr = (json: string): TaskMessage.MessageDecodeError => {
  const r = TaskMessage.decodeJson(json)
  if (Either.isRight(r)) assert.fail(`expected a decode error, got ${JSON.stringify(r.right)}`)
  return r.left
}

const wire = (o: Record<string, unknown>) => JSON.stringify({ task_id: taskId, task_name: "my.add", ...o })

describe("TaskMessage", () => {
  describe("decode taskiq's JSON", () => {
    it("reads the fields into camel case", () => {
      const m = decodeOk(taskiqJson)
      assert.strictEqual(m.taskId, taskId)
      assert.strictEqual(m.taskName, "my.add")
      assert.deepStrictEqual(m.args, [1, 2])
      assert.deepStrictEqual(m.kwargs, {})
      assert.isUndefined(m.extra)
    })

    it("parses labels by their type code", () => {
      const { labels } = decodeOk(taskiqJson)
      assert.strictEqual(labels.retry, 3)
      assert.strictEqual(labels.flag, true)
      assert.strictEqual(labels.ratio, 0.5)
      assert.strictEqual(labels.name, "x")
      assert.instanceOf(labels.raw, Uint8Array)
      assert.deepStrictEqual(Array.from(labels.raw as Uint8Array), [0x68, 0x69]) // "hi"
    })

    it("parses bool labels: \"False\" is false, \"True\" is true", () => {
      const { labels } = decodeOk(wire({ labels: { a: "False", b: "True" }, labels_types: { a: 5, b: 5 } }))
      assert.strictEqual(labels.a, false)
      assert.strictEqual(labels.b, true)
    })

    it("parses bool labels case-insensitively, as taskiq's parser does (x.lower() == \"true\")", () => {
      const { labels } = decodeOk(wire({ labels: { a: "TRUE", b: "true" }, labels_types: { a: 5, b: 5 } }))
      assert.strictEqual(labels.a, true)
      assert.strictEqual(labels.b, true)
    })

    it("keeps a label of type 1 (any) as the string it came as", () => {
      const { labels } = decodeOk(wire({ labels: { meta: "[1, 2]", n: "42" }, labels_types: { meta: 1, n: 1 } }))
      assert.strictEqual(labels.meta, "[1, 2]")
      assert.strictEqual(labels.n, "42")
    })

    it("parses negative and fractional numbers, and leaves an unparsable int as its string", () => {
      const { labels } = decodeOk(wire({
        labels: { a: "-7", b: "1e3", c: "-0.25", d: "seven" },
        labels_types: { a: 2, b: 4, c: 4, d: 2 }
      }))
      assert.strictEqual(labels.a, -7)
      assert.strictEqual(labels.b, 1000)
      assert.strictEqual(labels.c, -0.25)
      assert.strictEqual(labels.d, "seven")
    })

    it("keeps labels as they are when labels_types is absent (older taskiq)", () => {
      const m = decodeOk(wire({ labels: { retry: "3", flag: "True", count: 4, nested: { a: 1 } }, args: [], kwargs: {} }))
      assert.deepStrictEqual(m.labels, { retry: "3", flag: "True", count: 4, nested: { a: 1 } })
    })

    it("keeps labels as they are when labels_types is null", () => {
      const m = decodeOk(wire({ labels: { retry: "3", flag: "True" }, labels_types: null, args: [], kwargs: {} }))
      assert.deepStrictEqual(m.labels, { retry: "3", flag: "True" })
    })

    it("keeps a label without an entry in labels_types as it is", () => {
      const m = decodeOk(wire({ labels: { typed: "3", untyped: "3" }, labels_types: { typed: 2 } }))
      assert.strictEqual(m.labels.typed, 3)
      assert.strictEqual(m.labels.untyped, "3")
    })

    it("defaults missing labels, args and kwargs", () => {
      const m = decodeOk(wire({}))
      assert.deepStrictEqual(m.labels, {})
      assert.deepStrictEqual(m.args, [])
      assert.deepStrictEqual(m.kwargs, {})
    })

    it("keeps kwargs", () => {
      const m = decodeOk(wire({ args: [1], kwargs: { b: 2, c: [3] } }))
      assert.deepStrictEqual(m.kwargs, { b: 2, c: [3] })
    })

    it("keeps unknown top-level fields in extra", () => {
      const m = decodeOk(wire({ args: [], kwargs: {}, labels: {}, priority: 5, trace: { id: "t1" } }))
      assert.deepStrictEqual(m.extra, { priority: 5, trace: { id: "t1" } })
    })

    it("decodeUnknown accepts an already-parsed value", () => {
      const r = TaskMessage.decodeUnknown(JSON.parse(taskiqJson))
      assert.isTrue(Either.isRight(r))
      if (Either.isRight(r)) assert.strictEqual(r.right.labels.retry, 3)
    })
  })

  describe("round trip", () => {
    it("decode → encode gives back taskiq's JSON, type codes included", () => {
      const back = JSON.parse(TaskMessage.encodeJson(decodeOk(taskiqJson)))
      assert.deepStrictEqual(back, JSON.parse(taskiqJson))
    })

    it("decode → encode preserves unknown top-level fields", () => {
      const json = wire({ args: [1], kwargs: { k: "v" }, labels: {}, labels_types: {}, priority: 5, trace: { id: "t1" } })
      const back = JSON.parse(TaskMessage.encodeJson(decodeOk(json)))
      assert.deepStrictEqual(back, JSON.parse(json))
    })

    it("an unknown field cannot override the known ones on encode", () => {
      const m: TaskMessage.TaskMessage = {
        taskId,
        taskName: "my.add",
        labels: {},
        args: [1],
        kwargs: {},
        extra: { task_name: "evil", args: [] }
      }
      const back = JSON.parse(TaskMessage.encodeJson(m))
      assert.strictEqual(back.task_name, "my.add")
      assert.deepStrictEqual(back.args, [1])
    })

    it("encode → decode gives back the message", () => {
      const m: TaskMessage.TaskMessage = {
        taskId: TaskMessage.makeTaskId(),
        taskName: "pkg.mod:fn",
        labels: { retry: 2, ratio: 0.25, ok: false, who: "me", raw: new Uint8Array([0, 255, 7]) },
        args: [1, "two", { three: 3 }, [4]],
        kwargs: { five: 5 },
        extra: { priority: 9 }
      }
      assert.deepStrictEqual(decodeOk(TaskMessage.encodeJson(m)), m)
    })
  })

  describe("encodeLabels", () => {
    it("writes strings with taskiq's type codes", () => {
      const out = TaskMessage.encodeLabels({
        retry: 3,
        ratio: 0.5,
        flag: true,
        off: false,
        name: "x",
        raw: new Uint8Array([0x68, 0x69])
      })
      assert.deepStrictEqual(out.labels, { retry: "3", ratio: "0.5", flag: "True", off: "False", name: "x", raw: "aGk=" })
      assert.deepStrictEqual(out.labels_types, { retry: 2, ratio: 4, flag: 5, off: 5, name: 3, raw: 6 })
    })

    it("leaves structured values untyped, as JSON", () => {
      const out = TaskMessage.encodeLabels({ obj: { a: 1 }, list: [1, 2], nothing: null })
      assert.deepStrictEqual(out.labels, { obj: { a: 1 }, list: [1, 2], nothing: null })
      assert.deepStrictEqual(out.labels_types, {})
    })
  })

  describe("decode errors", () => {
    it("rejects invalid JSON with reason InvalidJson", () => {
      const e = decodeErr("{\"task_id\": ")
      assert.strictEqual(e._tag, "MessageDecodeError")
      assert.strictEqual(e.reason, "InvalidJson")
      assert.isUndefined(e.taskId)
      assert.include(e.message, "InvalidJson")
    })

    it("rejects a task_id that is not 32 lower-case hex digits, without a taskId", () => {
      for (
        const bad of [
          "0123456789ABCDEF0123456789ABCDEF", // upper case
          "01234567-89ab-cdef-0123-456789abcdef", // uuid with dashes
          "0123456789abcdef0123456789abcde", // 31 digits
          "0123456789abcdef0123456789abcdef0", // 33 digits
          "0123456789abcdef0123456789abcdeg" // not hex
        ]
      ) {
        const e = decodeErr(JSON.stringify({ task_id: bad, task_name: "my.add", labels: {}, args: [], kwargs: {} }))
        assert.strictEqual(e.reason, "InvalidShape", bad)
        assert.isUndefined(e.taskId, bad)
        assert.include(e.detail, "task_id", bad)
      }
    })

    it("rejects a numeric task_id", () => {
      const e = decodeErr(JSON.stringify({ task_id: 12, task_name: "my.add" }))
      assert.strictEqual(e.reason, "InvalidShape")
      assert.isUndefined(e.taskId)
    })

    it("rejects a missing task_name, keeping the readable task id", () => {
      const e = decodeErr(JSON.stringify({ task_id: taskId, labels: {}, args: [], kwargs: {} }))
      assert.strictEqual(e.reason, "InvalidShape")
      assert.strictEqual(e.taskId, taskId)
      assert.include(e.detail, "task_name")
    })

    it("rejects an empty task_name", () => {
      const e = decodeErr(JSON.stringify({ task_id: taskId, task_name: "", args: [], kwargs: {} }))
      assert.strictEqual(e.reason, "InvalidShape")
      assert.strictEqual(e.taskId, taskId)
    })

    it("rejects args that are not an array and kwargs that are not an object", () => {
      assert.strictEqual(decodeErr(wire({ args: { a: 1 } })).reason, "InvalidShape")
      assert.strictEqual(decodeErr(wire({ kwargs: [1] })).reason, "InvalidShape")
      assert.strictEqual(decodeErr(wire({ labels_types: { a: "int" }, labels: { a: "1" } })).reason, "InvalidShape")
    })

    it("rejects JSON that is not an object", () => {
      for (const json of ["null", "[]", "\"text\"", "42"]) {
        const e = decodeErr(json)
        assert.strictEqual(e.reason, "InvalidShape", json)
        assert.isUndefined(e.taskId, json)
      }
    })
  })

  describe("makeTaskId", () => {
    it("makes 32 lower-case hex digits of a uuid4", () => {
      const id = TaskMessage.makeTaskId()
      assert.match(id, /^[0-9a-f]{32}$/)
      assert.strictEqual(id[12], "4") // uuid version nibble
      assert.include("89ab", id[16]!) // uuid variant
    })

    it("makes ids the wire schema accepts, and different ones each time", () => {
      const ids = new Set(Array.from({ length: 200 }, () => TaskMessage.makeTaskId()))
      assert.strictEqual(ids.size, 200)
      for (const id of ids) {
        const r = TaskMessage.decodeJson(JSON.stringify({ task_id: id, task_name: "t" }))
        assert.isTrue(Either.isRight(r), id)
      }
    })
  })
})

describe("TaskMessage hot path", () => {
  it("accepts and rejects exactly what the wire Schema does", () => {
    const id = "0123456789abcdef0123456789abcdef"
    const shapes: ReadonlyArray<unknown> = [
      { task_id: id, task_name: "a" },
      { task_id: id, task_name: "a", labels: {}, labels_types: null, args: [1], kwargs: { x: 1 } },
      { task_id: id, task_name: "a", labels: { n: "1" }, labels_types: { n: 2 } },
      { task_id: id, task_name: "a", extra_field: true },
      { task_id: id.toUpperCase(), task_name: "a" },
      { task_id: id, task_name: "" },
      { task_id: id, task_name: 3 },
      { task_id: id, task_name: "a", labels: [] },
      { task_id: id, task_name: "a", labels_types: { n: "2" } },
      { task_id: id, task_name: "a", args: {} },
      { task_id: id, task_name: "a", kwargs: [] },
      { task_name: "a" },
      [],
      null,
      "text"
    ]
    const bySchema = Schema.decodeUnknownEither(TaskMessage.TaskMessageWire, { onExcessProperty: "preserve" })
    for (const shape of shapes) {
      assert.strictEqual(
        Either.isRight(TaskMessage.decodeUnknown(shape)),
        Either.isRight(bySchema(shape)),
        JSON.stringify(shape)
      )
    }
  })
})
