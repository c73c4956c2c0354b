#!/usr/bin/env node
// The `taskiq` command. tsx's ESM loader is registered first, so that the command and the user's `.ts`
// app and task modules load without a build step; `.js` modules load as they are.
import { register } from "tsx/esm/api"

register()
await import("../src/cli/main.ts")
