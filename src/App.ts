/**
 * An application: what a worker command or a client needs to know — the broker and backend layer,
 * the declared tasks, and the task modules for `kc.exec`. It is what `taskiq worker <module>:<export>`
 * loads (taskiq's "broker" object).
 */
import type * as Layer from "effect/Layer"
import type { Broker } from "./Broker.js"
import type { ResultBackend } from "./ResultBackend.js"
import type * as Task from "./Task.js"
import * as Taskiq from "./Taskiq.js"
import type { TaskRegistryOptions } from "./TaskRegistry.js"
import type { WorkerOptions } from "./Worker.js"

const TypeId: unique symbol = Symbol.for("effect-taskiq/App")

/** An application definition. */
export interface App {
  readonly [TypeId]: typeof TypeId
  /** Where tasks go and results come from (default: Redis, configured from the environment and `.env`). */
  readonly layer: Layer.Layer<Broker | ResultBackend, unknown>
  /** Declared tasks (more are found in the task modules). */
  readonly tasks: ReadonlyArray<Task.Any>
  /** Task modules for `kc.exec` and for declared tasks (paths relative to `appDir`), and discovery. */
  readonly registry: TaskRegistryOptions
  /** Worker settings; the command line overrides them. */
  readonly worker: WorkerOptions
}

/** Options of `App.make`. */
export interface AppOptions extends TaskRegistryOptions {
  readonly layer?: Layer.Layer<Broker | ResultBackend, unknown> | undefined
  readonly tasks?: ReadonlyArray<Task.Any> | undefined
  readonly worker?: WorkerOptions | undefined
}

/** Defines an application. */
export const make = (options: AppOptions = {}): App => ({
  [TypeId]: TypeId,
  layer: options.layer ?? Taskiq.layerRedisConfig(),
  tasks: options.tasks ?? [],
  registry: {
    appDir: options.appDir,
    modules: options.modules,
    fsDiscover: options.fsDiscover,
    tasksPattern: options.tasksPattern
  },
  worker: options.worker ?? {}
})

/** Whether a value is an application definition. */
export const isApp = (u: unknown): u is App => typeof u === "object" && u !== null && TypeId in u
