/**
 * The example application, as `npx taskiq worker examples/app.ts:app` loads it: the Redis layer from the
 * environment and `.env` (the default), the declared tasks, and a task module for kc.exec.
 */
import { App } from "effect-taskiq"
import { tasks } from "./tasks.js"

export const app = App.make({
  tasks,
  // Task module names are relative to this folder, wherever the worker is started from.
  appDir: import.meta.dirname,
  modules: ["kc_tasks.ts"],
  worker: { maxAsyncTasks: 50 }
})
