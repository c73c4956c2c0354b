/**
 * A worker written as a program, for the declared tasks of examples/tasks.ts (the `taskiq worker` command
 * does the same for an App, plus kc.exec and supervision). `npx tsx examples/worker.ts`; SIGINT/SIGTERM drain it.
 */
import { Effect } from "effect"
import { NodeRuntime } from "@effect/platform-node"
import { Executor, Taskiq, Worker } from "effect-taskiq"
import { add, divide } from "./tasks.js"

Worker.run({ maxAsyncTasks: 100, shutdownTimeout: "5 seconds" }).pipe(
  Effect.provide(Executor.layer([add, divide])),
  Effect.provide(Taskiq.layerRedisConfig()),
  NodeRuntime.runMain                                         // SIGINT/SIGTERM → graceful shutdown
)
