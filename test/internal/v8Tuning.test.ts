import { assert, describe, it } from "@effect/vitest"
import { pretenuringChosenAtStart } from "../../src/internal/v8Tuning.js"

describe("v8Tuning", () => {
  it("leaves pretenuring alone when node was started with a flag about it, whatever its form", () => {
    assert.isTrue(pretenuringChosenAtStart(["--allocation-site-pretenuring"]))
    assert.isTrue(pretenuringChosenAtStart(["--import", "tsx", "--no-allocation-site-pretenuring"]))
    assert.isTrue(pretenuringChosenAtStart(["--no-allocation_site_pretenuring"]), "V8 accepts underscores too")
    assert.isFalse(pretenuringChosenAtStart([]))
    assert.isFalse(pretenuringChosenAtStart(["--import", "tsx", "--max-semi-space-size=32"]))
  })
})
