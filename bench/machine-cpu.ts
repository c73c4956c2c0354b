/**
 * CPU time the whole machine spent busy (Linux `/proc/stat`), so that a run can tell how much of it went
 * to processes other than its own: on a shared machine that is the noise in every timing.
 */
import { readFileSync } from "node:fs"

// /proc/stat counts in USER_HZ ticks, 100 a second on every mainstream Linux build.
const microsPerTick = 10_000

/** Busy CPU time of all cores since boot, µs; undefined where there is no /proc/stat. */
export const machineBusyMicros = (): number | undefined => {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!
    // cpu user nice system idle iowait irq softirq steal ...
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
    return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) * microsPerTick
  } catch {
    return undefined
  }
}

/** The harness process's own CPU time, µs. */
export const ownCpuMicros = (): number => {
  const u = process.cpuUsage()
  return u.user + u.system
}

/**
 * Waits until the machine is quiet (less than `thresholdCores` busy over half a second, the harness
 * excluded), at most `maxMs`; returns how long it waited. On a shared machine this keeps other people's
 * builds out of the timings where it can; where it cannot, the runs record how much CPU others took.
 */
export const waitForQuiet = async (maxMs: number, thresholdCores = 0.25): Promise<number> => {
  const started = performance.now()
  while (performance.now() - started < maxMs) {
    const machine0 = machineBusyMicros()
    if (machine0 === undefined) return 0
    const own0 = ownCpuMicros()
    const t0 = performance.now()
    await new Promise((resolve) => setTimeout(resolve, 500))
    const busy = (machineBusyMicros()! - machine0 - (ownCpuMicros() - own0)) / 1000 / (performance.now() - t0)
    if (busy < thresholdCores) break
  }
  return performance.now() - started
}
