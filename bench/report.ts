/**
 * Figures, the table printed at the end, and results.json.
 */
import { writeFileSync } from "node:fs"
import { type SystemName, systemLabel, systems, type WorkloadName } from "./config.js"
import { median } from "./util.js"

export interface Figure {
  readonly workload: WorkloadName
  readonly label: string
  readonly unit: string
  /** Which way is good; ratios are printed either way as ours / theirs. */
  readonly better: "higher" | "lower"
  /** One value per repetition, per system; a system may be absent (no raw equivalent). */
  readonly values: Partial<Record<SystemName, ReadonlyArray<number>>>
}

/** An empty set of per-repetition values, to be filled run by run. */
export const perSystem = (): Record<SystemName, Array<number>> => ({ ours: [], bullmq: [], raw: [] })

export interface Ratios {
  readonly oursOverBullmq: number | undefined
  readonly oursOverRaw: number | undefined
  readonly bullmqOverRaw: number | undefined
}

const medianOf = (f: Figure, s: SystemName): number | undefined => {
  const xs = f.values[s]
  return xs && xs.length > 0 ? median(xs) : undefined
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b

export const ratios = (f: Figure): Ratios => ({
  oursOverBullmq: ratio(medianOf(f, "ours"), medianOf(f, "bullmq")),
  oursOverRaw: ratio(medianOf(f, "ours"), medianOf(f, "raw")),
  bullmqOverRaw: ratio(medianOf(f, "bullmq"), medianOf(f, "raw"))
})

const formatValue = (x: number | undefined): string => {
  if (x === undefined || Number.isNaN(x)) return "–"
  if (Number.isInteger(x)) return x.toLocaleString("en-US")
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US")
  if (Math.abs(x) >= 100) return x.toFixed(0)
  if (Math.abs(x) >= 10) return x.toFixed(1)
  return x.toFixed(2)
}

const formatRatio = (x: number | undefined): string => (x === undefined ? "–" : `${x.toFixed(2)}×`)

/** The table as rows of cells (header first); shared by the console and RESULTS.md. */
const rows = (figures: ReadonlyArray<Figure>): Array<Array<string>> => [
  ["workload", "unit", ...systems.map((s) => systemLabel[s]), "ours/BullMQ", "ours/raw", "BullMQ/raw", "reps"],
  ...figures.map((f) => {
    const r = ratios(f)
    const reps = Math.max(...systems.map((s) => f.values[s]?.length ?? 0))
    return [
      f.label,
      `${f.unit}${f.better === "lower" ? " ↓" : " ↑"}`,
      ...systems.map((s) => formatValue(medianOf(f, s))),
      formatRatio(r.oursOverBullmq),
      formatRatio(r.oursOverRaw),
      formatRatio(r.bullmqOverRaw),
      String(reps)
    ]
  })
]

export const renderTable = (figures: ReadonlyArray<Figure>): string => {
  const table = rows(figures)
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)))
  const line = (row: ReadonlyArray<string>) =>
    row.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ")
  return [line(table[0]!), widths.map((w) => "─".repeat(w)).join("  "), ...table.slice(1).map(line)].join("\n")
}

export const renderMarkdown = (figures: ReadonlyArray<Figure>): string => {
  const table = rows(figures)
  return [
    `| ${table[0]!.join(" | ")} |`,
    `|${table[0]!.map((_, c) => (c < 2 ? "---" : "---:")).join("|")}|`,
    ...table.slice(1).map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")
}

export const writeResults = (file: URL, header: Record<string, unknown>, figures: ReadonlyArray<Figure>, extra: Record<string, unknown>): void => {
  const body = {
    ...header,
    figures: figures.map((f) => ({
      workload: f.workload,
      label: f.label,
      unit: f.unit,
      better: f.better,
      median: Object.fromEntries(systems.map((s) => [s, medianOf(f, s) ?? null])),
      reps: f.values,
      ratios: ratios(f)
    })),
    ...extra
  }
  writeFileSync(file, `${JSON.stringify(body, null, 2)}\n`)
}
