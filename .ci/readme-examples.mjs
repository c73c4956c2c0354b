// Checks that every TypeScript snippet of README.md is an excerpt of a file in examples/ (which tsc type-checks
// and .ci/examples runs): a ```ts block starts with the line `// examples/<file>`; its other lines must appear in
// that file as they are (trailing spaces aside), in order; a line `// …` marks an omission.
// Usage: node .ci/readme-examples.mjs [README.md]
import { existsSync, readFileSync } from "node:fs"
import { dirname, join, normalize } from "node:path"

const readme = process.argv[2] ?? join(import.meta.dirname, "..", "README.md")
const root = dirname(readme)
const text = readFileSync(readme, "utf8")
const problems = []
let count = 0

const blocks = [...text.matchAll(/^```(ts|typescript)\n([\s\S]*?)^```$/gm)]
for (const block of blocks) {
  const line = text.slice(0, block.index).split("\n").length
  const lines = block[2].replace(/\n$/, "").split("\n").map((l) => l.trimEnd())
  const header = /^\/\/ (examples\/[\w./-]+\.ts)$/.exec(lines[0] ?? "")
  if (header === null) {
    problems.push(`README.md:${line}: a ts block must start with "// examples/<file>.ts", got ${JSON.stringify(lines[0])}`)
    continue
  }
  const path = normalize(header[1])
  if (!path.startsWith("examples/") || !existsSync(join(root, path))) {
    problems.push(`README.md:${line}: ${header[1]} does not exist`)
    continue
  }
  const file = readFileSync(join(root, path), "utf8").split("\n").map((l) => l.trimEnd())
  // The excerpt's chunks (between `// …` lines) must each be found, in order.
  const chunks = [[]]
  for (const l of lines.slice(1)) {
    if (l.trim() === "// …") chunks.push([])
    else chunks.at(-1).push(l)
  }
  let from = 0
  for (const chunk of chunks.filter((c) => c.length > 0)) {
    let found = -1
    for (let i = from; i + chunk.length <= file.length && found < 0; i++) {
      if (chunk.every((l, j) => file[i + j] === l)) found = i
    }
    if (found < 0) {
      const missing = chunk.find((l) => !file.includes(l))
      problems.push(
        `README.md:${line}: this excerpt is not in ${path}: ` +
          (missing !== undefined
            ? `no line ${JSON.stringify(missing)}`
            : `its lines from ${JSON.stringify(chunk[0])} are not together, or not in this order`)
      )
      break
    }
    from = found + chunk.length
  }
  count++
}

if (problems.length > 0) {
  console.error(problems.join("\n"))
  process.exit(1)
}
console.log(`README.md: ${count} TypeScript snippets, each an excerpt of its file in examples/`)
