import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Worker-process tests spawn real processes; two cores are shared with them.
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1
  }
})
