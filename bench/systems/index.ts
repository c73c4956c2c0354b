/** Builds a target of any system. */
import type { SystemName } from "../config.js"
import { makeBullmq } from "./bullmq.js"
import { makeOurs } from "./ours.js"
import { makeRaw } from "./raw.js"
import type { Target, TargetOptions } from "./target.js"

export type { Target, TargetOptions } from "./target.js"

export const makeTarget = (system: SystemName, options: TargetOptions): Promise<Target> =>
  system === "ours" ? makeOurs(options) : system === "bullmq" ? makeBullmq(options) : makeRaw(options)
