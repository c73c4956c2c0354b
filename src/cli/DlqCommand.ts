/**
 * `taskiq dlq list|requeue|purge <module>:<export>`: the operator's view of the App's dead-letter queue —
 * inspect the dead letters, move them back into the queue, or delete them (`Broker.deadLetters`,
 * `Broker.requeueDeadLetters`, `Broker.purgeDeadLetters`).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { Broker, type DeadLetter } from "../Broker.js"
import { loadApp } from "../internal/appLoader.js"
import * as TaskMessage from "../TaskMessage.js"
import { CliError, ExitCode } from "./CliError.js"

const app = Args.text({ name: "module:export" }).pipe(
  Args.withDescription("The application whose queue's dead letters to work on, as for `taskiq worker`. Example: examples/app.ts:app")
)

const appDir = Options.directory("app-dir", { exists: "yes" }).pipe(
  Options.optional,
  Options.withDescription("The folder <module:export> is looked up in. Default: the current folder.")
)

const ids = Options.text("id").pipe(
  Options.repeated,
  Options.withDescription("A dead letter's id (as `taskiq dlq list` prints it); repeatable.")
)

const all = Options.boolean("all").pipe(Options.withDescription("Every dead letter (instead of --id)."))

/** Loads the App and runs `f` with its broker; the App's connections close when it is done. */
const withBroker = <A, E>(
  spec: string,
  dir: Option.Option<string>,
  f: (broker: Broker["Type"]) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const loaded = yield* loadApp(spec, Option.getOrElse(dir, () => process.cwd()))
    const services = yield* Layer.build(loaded.layer)
    const broker = Context.getOption(services as Context.Context<unknown>, Broker)
    if (Option.isNone(broker)) {
      return yield* new CliError({ reason: "MissingService", detail: "the app's layer provides no Broker" })
    }
    return yield* f(broker.value)
  }).pipe(Effect.scoped)

/** A usage error found after parsing: said on stderr, exit code 2. */
const usageError = (text: string) =>
  Console.error(`taskiq: ${text}`).pipe(Effect.zipRight(Effect.sync(() => void (process.exitCode = ExitCode.config))))

/** `--id …` or `--all`, exactly one of them. */
const selection = (command: string, config: { readonly id: ReadonlyArray<string>; readonly all: boolean }) =>
  config.all && config.id.length > 0
    ? Either.left(`dlq ${command}: give either --id … or --all, not both`)
    : !config.all && config.id.length === 0
    ? Either.left(`dlq ${command}: say which dead letters: --id ID (repeatable; ids as \`taskiq dlq list\` prints them) or --all`)
    : Either.right(config.all ? {} : { ids: config.id })

/** What an operator sees of a dead letter; the task name when its payload decodes. */
export const describeDeadLetter = (dead: DeadLetter) => {
  const decoded = TaskMessage.decodeJson(dead.data)
  return {
    id: dead.id,
    taskId: dead.taskId ?? null,
    taskName: Either.isRight(decoded) ? decoded.right.taskName : null,
    deliveries: dead.deliveries,
    reason: dead.reason,
    data: dead.data
  }
}

const list = Command.make("list", {
  app,
  appDir,
  count: Options.integer("count").pipe(
    Options.withDefault(100),
    Options.withDescription("The most to show, oldest first.")
  ),
  json: Options.boolean("json").pipe(
    Options.withDescription("A JSON array of { id, taskId, taskName, deliveries, reason, data } instead of text lines.")
  )
}, (config) =>
  config.count < 1
    ? usageError("dlq list: --count must be at least 1")
    : withBroker(config.app, config.appDir, (broker) =>
      Effect.gen(function*() {
        const dead = (yield* broker.deadLetters(config.count)).map(describeDeadLetter)
        if (config.json) return yield* Console.log(JSON.stringify(dead, null, 2))
        if (dead.length === 0) return yield* Console.log(`no dead letters in queue "${broker.queueName}"`)
        for (const d of dead) {
          yield* Console.log(
            [d.id, `task ${d.taskId ?? "-"}`, d.taskName ?? "(undecodable)", `deliveries ${d.deliveries}`, d.reason].join("  ")
          )
        }
      })
    )).pipe(Command.withDescription("Print the dead letters, oldest first: id, task id, task name, deliveries, reason."))

const requeue = Command.make("requeue", { app, appDir, id: ids, all }, (config) =>
  Either.match(selection("requeue", config), {
    onLeft: usageError,
    onRight: (which) =>
      withBroker(config.app, config.appDir, (broker) =>
        Effect.gen(function*() {
          const moved = yield* broker.requeueDeadLetters(which)
          yield* Console.log(`requeued ${moved} dead letter${moved === 1 ? "" : "s"} to queue "${broker.queueName}"`)
          if (which.ids !== undefined && moved < which.ids.length) {
            yield* Console.error(`taskiq: ${which.ids.length - moved} of the ids given were not dead letters (see \`taskiq dlq list\`)`)
          }
        }))
  })).pipe(
    Command.withDescription(
      "Move dead letters back into the queue: each one's original message is published again (its delivery count " +
        "starts over) and removed from the dead letters, atomically."
    )
  )

const purge = Command.make("purge", {
  app,
  appDir,
  id: ids,
  all,
  yes: Options.boolean("yes").pipe(Options.withDescription("Confirm: the dead letters are deleted for good."))
}, (config) =>
  Either.match(selection("purge", config), {
    onLeft: usageError,
    onRight: (which) =>
      !config.yes
        ? usageError(
          "dlq purge deletes dead letters for good and cannot be undone; add --yes to confirm " +
            "(`taskiq dlq list` shows them, `taskiq dlq requeue` replays them instead)"
        )
        : withBroker(config.app, config.appDir, (broker) =>
          Effect.gen(function*() {
            const deleted = yield* broker.purgeDeadLetters(which)
            yield* Console.log(`deleted ${deleted} dead letter${deleted === 1 ? "" : "s"} of queue "${broker.queueName}"`)
          }))
  })).pipe(Command.withDescription("Delete dead letters for good (--id … or --all); refuses without --yes."))

/** The `dlq` command and its subcommands. */
export const command = Command.make("dlq").pipe(
  Command.withDescription(
    "Inspect and replay the App's dead letters: messages whose task could not be decoded or whose workers kept " +
      "dying (--max-deliveries)."
  ),
  Command.withSubcommands([list, requeue, purge])
)
