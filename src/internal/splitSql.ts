/**
 * Splits a SQL script into statements at top-level semicolons, skipping those
 * inside quotes, dollar-quoted bodies and comments. The driver runs one
 * statement per round trip (extended protocol), so migrations go through this.
 */
export const splitSql = (script: string): Array<string> => {
  const statements: Array<string> = []
  let start = 0
  let i = 0
  const n = script.length
  const push = (end: number) => {
    const text = script.slice(start, end).trim()
    if (text.replace(/--[^\n]*/g, "").trim().length > 0) statements.push(text)
  }
  while (i < n) {
    const c = script[i]!
    const next = script[i + 1]
    if (c === "-" && next === "-") {
      const end = script.indexOf("\n", i)
      i = end === -1 ? n : end + 1
    } else if (c === "/" && next === "*") {
      const end = script.indexOf("*/", i + 2)
      i = end === -1 ? n : end + 2
    } else if (c === "'" || c === "\"") {
      let j = i + 1
      while (j < n) {
        if (script[j] === c) {
          if (script[j + 1] === c) j += 2
          else break
        } else j++
      }
      i = j + 1
    } else if (c === "$") {
      const tag = /^\$[A-Za-z_]*\$/.exec(script.slice(i))
      if (tag === null) {
        i++
      } else {
        const end = script.indexOf(tag[0], i + tag[0].length)
        i = end === -1 ? n : end + tag[0].length
      }
    } else if (c === ";") {
      push(i)
      start = i + 1
      i++
    } else {
      i++
    }
  }
  push(n)
  return statements
}
