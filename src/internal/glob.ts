/**
 * A small glob matcher for task-module patterns (`**`, `*`, `?`, `{a,b}`), and the folder walk that
 * finds them: node_modules and dot folders are never entered.
 */
import { readdirSync } from "node:fs"
import { join, relative, sep } from "node:path"

const escape = (c: string) => c.replace(/[.+^$()|[\]\\]/g, "\\$&")

/** Compiles a glob over POSIX-style relative paths into a RegExp. */
export const globToRegExp = (glob: string): RegExp => {
  let re = ""
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === "*") {
      if (glob[i + 1] === "*") {
        // `**/` matches any number of folders, including none.
        const slash = glob[i + 2] === "/"
        re += slash ? "(?:.*/)?" : ".*"
        i += slash ? 2 : 1
      } else {
        re += "[^/]*"
      }
    } else if (c === "?") {
      re += "[^/]"
    } else if (c === "{") {
      const end = glob.indexOf("}", i)
      if (end === -1) {
        re += "\\{"
        continue
      }
      re += `(?:${glob.slice(i + 1, end).split(",").map(escape).join("|")})`
      i = end
    } else {
      re += escape(c)
    }
  }
  return new RegExp(`^${re}$`)
}

/** Files below `root` (relative, POSIX separators) matching any pattern, sorted. */
export const findFiles = (root: string, patterns: ReadonlyArray<string>): Array<string> => {
  const res = patterns.map(globToRegExp)
  const out: Array<string> = []
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue
      const full = join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.isFile()) {
        const rel = relative(root, full).split(sep).join("/")
        if (res.some((re) => re.test(rel))) out.push(rel)
      }
    }
  }
  walk(root)
  return out.sort()
}
