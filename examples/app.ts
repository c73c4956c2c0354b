/**
 * The example application, as `npx taskiq worker examples/app.ts:app` loads it: the Redis layer from the
 * environment and `.env` (the default), the declared tasks, and a task module for kc.exec.
 */
import { App } from "effect-taskiq"
import { tasks } from "./tasks.js"

export const app = App.make({
  tasks,                                  // declared tasks
  appDir: import.meta.dirname,            // task modules are named relative to this folder
  modules: ["kc_tasks.ts"],               // plain exported async functions, run through kc.exec
  worker: { maxAsyncTasks: 50 }           // Worker options; the command line overrides them
  // layer: Taskiq.layerRedis({...})      // default: Taskiq.layerRedisConfig() (environment and .env)
})
