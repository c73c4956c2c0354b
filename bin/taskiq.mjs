#!/usr/bin/env node
// The `taskiq` command. tsx's ESM loader is registered, so that the command and the user's `.ts` app and task
// modules load without a build step; `.js` modules load as they are.
//
// The command's JavaScript dependencies are loaded first, before tsx is registered: on Node 20 a registered loader
// runs on a thread of its own, so each module loaded after it costs a round trip to that thread (resolve and load),
// and tsx turns on source maps, which Node then reads for every module that names one. effect, @effect/cli,
// @effect/platform-node and ioredis are hundreds of modules that need neither: loaded first, a worker is ready
// ≈ 0.4 s sooner (1.8 → 1.4 s from spawn to consuming, examples/app.ts). They are the very modules the command
// imports later (same URLs), so nothing is loaded twice. The whole `effect` package, not only what @effect/cli
// needs: without it a worker is ready ≈ 0.15 s later, its own modules then loading the rest through tsx.
await Promise.all([
  import("effect"),
  import("@effect/cli"),
  import("@effect/platform-node/NodeContext"),
  import("@effect/platform-node/NodeRuntime"),
  import("ioredis")
])
const { register } = await import("tsx/esm/api")
register()
await import("../src/cli/main.ts")
