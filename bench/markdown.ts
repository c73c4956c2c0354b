/**
 * Prints the table of a results.json as Markdown, for bench/RESULTS.md:
 *   npx tsx bench/markdown.ts [bench/results.json]
 */
import { readFileSync } from "node:fs"
import { type Figure, renderMarkdown } from "./report.js"

interface Stored {
  readonly machine: { readonly cpu: string; readonly cores: number; readonly memoryGiB: number; readonly os: string }
  readonly versions: Record<string, string>
  readonly mode: string
  readonly startedAt: string
  readonly durationSeconds: number
  readonly prefetch?: number
  readonly v8Pretenuring?: boolean
  readonly figures: ReadonlyArray<Figure & { readonly reps: Figure["values"] }>
}

const file = process.argv[2] ?? new URL("./results.json", import.meta.url)
const stored = JSON.parse(readFileSync(file, "utf8")) as Stored
const { machine: m, versions: v } = stored
console.log(`${stored.mode} run of ${stored.startedAt} (${stored.durationSeconds} s): ${m.cpu}, ${m.cores} cores, ` +
  `${m.memoryGiB} GiB, ${m.os}; ${Object.entries(v).map(([k, x]) => `${k} ${x}`).join(", ")}` +
  `${stored.prefetch ? `; our worker with maxPrefetch ${stored.prefetch}` : ""}` +
  `${stored.v8Pretenuring ? "; our worker with V8's allocation-site pretenuring on" : ""}\n`)
console.log(renderMarkdown(stored.figures.map((f) => ({ ...f, values: f.reps }))))
