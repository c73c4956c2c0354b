/**
 * V8 settings the worker command applies to its own process.
 *
 * Allocation-site pretenuring: V8 watches which allocation sites' objects survive young-generation collections and
 * starts allocating those sites' objects directly in the old generation. A worker's hot path misleads it: the
 * objects of a task's short waits and hand-offs get pretenured, die at once, and as old garbage keep the young
 * objects they point to alive through every young-generation collection until the next full one; those are copied,
 * then promoted. Measured (bench/RESULTS.md, bench/drain.ts --gc): ≈ 995 bytes per task promoted draining at c16 and
 * scavenges pausing ≈ 3 ms at the median; with pretenuring off ≈ 25 bytes, ≈ 1.1 ms, and 15–30 % less worker CPU per
 * task (c128 / c16).
 * The flag takes effect when set at run time (`NODE_OPTIONS` refuses it), for the allocation decisions made after.
 */
import { setFlagsFromString } from "node:v8"

/** The V8 flag that turns allocation-site pretenuring off. */
export const noPretenuringFlag = "--no-allocation-site-pretenuring"

/** Whether the process was started with its own choice about pretenuring (which is then left alone). */
export const pretenuringChosenAtStart = (execArgv: ReadonlyArray<string>): boolean =>
  execArgv.some((arg) => arg.replaceAll("_", "-").includes("allocation-site-pretenuring"))

/**
 * Turns allocation-site pretenuring off for this process, unless it was started with a flag about it: `"off"`
 * when it did, `"as started"` when it left the process's own choice.
 */
export const turnOffPretenuring = (execArgv: ReadonlyArray<string> = process.execArgv): "off" | "as started" => {
  if (pretenuringChosenAtStart(execArgv)) return "as started"
  setFlagsFromString(noPretenuringFlag)
  return "off"
}
