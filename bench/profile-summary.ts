/**
 * Reads a V8 `.cpuprofile` (from `--profile`, `node --cpu-prof` or DevTools) and ranks functions by self time, and groups the
 * time by where the code lives (effect, ioredis, our src/, Node internals, GC).
 * Usable alone: `npx tsx bench/profile-summary.ts <file.cpuprofile>`.
 */
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface ProfileEntry {
  readonly name: string
  readonly where: string
  readonly selfMs: number
  readonly percent: number
}

export interface ProfileSummary {
  readonly file: string
  readonly totalMs: number
  /** Busy time (everything but `(idle)` and the profiler itself); the percentages below are of it. */
  readonly busyMs: number
  readonly top: ReadonlyArray<ProfileEntry>
  readonly byArea: ReadonlyArray<{ readonly area: string; readonly percent: number }>
}

const shortUrl = (url: string): string =>
  url
    .replace(/^file:\/\//, "")
    .replace(/^.*\/node_modules\//, "")
    .replace(/^.*\/(src|bench)\//, "$1/")

// Adds `amount` to `key`'s running total.
const addTo = <K>(totals: Map<K, number>, key: K, amount: number): void => void totals.set(key, (totals.get(key) ?? 0) + amount)

// Where a function's code lives, for CPU and allocation profiles alike.
const area = (callFrame: { readonly functionName: string; readonly url: string }): string => {
  const { url, functionName } = callFrame
  if (functionName.startsWith("(")) return functionName // (garbage collector), (program), (idle)
  if (url.includes("/node_modules/effect/")) return "effect runtime & libraries"
  if (url.includes("/node_modules/ioredis/") || url.includes("/node_modules/redis-parser/")) return "ioredis"
  if (url.includes("/src/")) return "effect-taskiq src/"
  if (url.includes("/bench/")) return "bench (task handler, IPC)"
  if (url.startsWith("node:") || url === "") return "node internals & builtins"
  return "other"
}

export const summarise = (file: string, topN = 20): ProfileSummary => {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parentOf = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id)
  // The profiler's own work (stopping and serialising, under node:inspector) is not the worker's.
  const isProfiler = (id: number): boolean => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parentOf.get(cur)) {
      if (byId.get(cur)!.callFrame.url === "node:inspector") return true
    }
    return false
  }
  // Sample i was taken timeDeltas[i] µs after sample i-1: charge that interval to sample i's function.
  const selfUs = new Map<number, number>()
  profile.samples.forEach((id, i) => addTo(selfUs, id, profile.timeDeltas[i] ?? 0))
  let totalUs = 0
  let idleUs = 0
  const byFunction = new Map<string, { name: string; where: string; us: number }>()
  const byArea = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!
    totalUs += us
    if (node.callFrame.functionName === "(idle)" || isProfiler(id)) {
      idleUs += us
      continue
    }
    const { functionName, url, lineNumber } = node.callFrame
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : ""
    const key = `${functionName}@${where}`
    const entry = byFunction.get(key) ?? { name: functionName || "(anonymous)", where, us: 0 }
    entry.us += us
    byFunction.set(key, entry)
    addTo(byArea, area(node.callFrame), us)
  }
  const busyUs = totalUs - idleUs
  const pct = (us: number) => (100 * us) / busyUs
  return {
    file,
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    top: [...byFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((e) => ({ name: e.name, where: e.where, selfMs: e.us / 1000, percent: pct(e.us) })),
    byArea: [...byArea.entries()].sort((a, b) => b[1] - a[1]).map(([a, us]) => ({ area: a, percent: pct(us) }))
  }
}

export const renderSummary = (s: ProfileSummary): string =>
  [
    `CPU profile ${s.file}: ${s.busyMs.toFixed(0)} ms busy of ${s.totalMs.toFixed(0)} ms`,
    "  by area (self time, % of busy):",
    ...s.byArea.map((a) => `    ${a.percent.toFixed(1).padStart(5)} %  ${a.area}`),
    `  top ${s.top.length} functions by self time:`,
    ...s.top.map((e) => `    ${e.percent.toFixed(1).padStart(5)} %  ${e.name}  ${e.where}`)
  ].join("\n")

interface SamplingNode {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number; readonly columnNumber: number }
  readonly selfSize: number
  readonly children: ReadonlyArray<SamplingNode>
}

// Where a sampled allocation happened: the function, its place (with the column: tsx-compiled modules are one line),
// and its caller's name (most allocating functions are anonymous closures).
const allocationSite = (node: SamplingNode, parent: SamplingNode | undefined): string => {
  const { columnNumber, functionName, lineNumber, url } = node.callFrame
  const caller = parent === undefined ? "" : ` ← ${parent.callFrame.functionName || "(anonymous)"}`
  return `${functionName || "(anonymous)"}  ${url ? `${shortUrl(url)}:${lineNumber + 1}:${columnNumber + 1}` : ""}${caller}`
}

/** A heap sampling profile (HeapProfiler.stopSampling's `head`) as bytes allocated per task, by allocating function. */
export const renderAllocations = (head: SamplingNode, tasks: number, topN = 25): string => {
  const bySite = new Map<string, number>()
  const byArea = new Map<string, number>()
  let total = 0
  const visit = (node: SamplingNode, parent: SamplingNode | undefined) => {
    if (node.selfSize > 0) {
      addTo(bySite, allocationSite(node, parent), node.selfSize)
      addTo(byArea, area(node.callFrame), node.selfSize)
      total += node.selfSize
    }
    for (const child of node.children) visit(child, node)
  }
  visit(head, undefined)
  const rows = (totals: Map<string, number>, limit = totals.size) =>
    [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([label, bytes]) =>
      `  ${(bytes / tasks).toFixed(0).padStart(6)} B  ${(100 * bytes / total).toFixed(1).padStart(5)} %  ${label}`
    )
  return [
    `allocations: ${(total / tasks).toFixed(0)} bytes per task (sampled, objects collected since included)`,
    ...rows(byArea),
    "  by allocating function:",
    ...rows(bySite, topN)
  ].join("\n")
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2]
  if (!file) {
    console.error("usage: npx tsx bench/profile-summary.ts <file.cpuprofile>")
    process.exit(2)
  }
  console.log(renderSummary(summarise(file)))
}
