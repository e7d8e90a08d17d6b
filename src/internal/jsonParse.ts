/**
 * JSON text to a value, exactly, on every Node.js the library supports.
 *
 * `JSON.parse` in Node.js 23 and later (V8 12.9 on; seen on 23.0, 24.0,
 * 24.21 and 26.10 with V8 14.6; not on 22, nor in Chromium 156 with V8
 * 15.6) can return a wrong object key. When it parses an object, it guesses
 * each key after the first from the keys of objects it built before along
 * the same path of keys, and an escaped key whose decoded length equals the
 * guess's length is taken for the guess when its raw text starts with it.
 * After `JSON.parse('{"r":1,"\\\\":2}')` (key: one
 * backslash) is alive, `JSON.parse('{"r":1,"\\n":2}')` returns the key
 * `"\\"`, not a newline. The guess needs a key with a literal backslash, so
 * it strikes data with such keys (paths, patterns, escaped text), and which
 * objects are alive decides when: a job's args could reach its worker, or its
 * unique key be computed, with another key.
 *
 * So every JSON text the library reads from PostgreSQL or builds for itself
 * goes through `parseJson`: `JSON.parse` when no key has an escape (almost
 * always, and the test is one `indexOf` when the text has no backslash at
 * all), else a small parser here whose keys are decoded one by one.
 */

/**
 * Whether `JSON.parse` may misread a key of `text` (see the module's doc):
 * whether a string literal with an escape in it is followed by a colon. One
 * pass from the start, string by string, so a quote escaped inside a string
 * is never taken for the start of one (a pattern tried at every quote would
 * rescan a string once per escaped quote in it: seconds for 50,000).
 */
export const hasEscapedKey = (text: string): boolean => {
  let backslash = text.indexOf("\\")
  if (backslash === -1) return false
  let open = text.indexOf("\"")
  while (open !== -1) {
    const close = closingQuote(text, open)
    if (close === -1) return false
    if (backslash < open) backslash = text.indexOf("\\", open)
    if (backslash === -1) return false
    if (backslash < close && colonFollows(text, close + 1)) return true
    open = text.indexOf("\"", close + 1)
  }
  return false
}

/** The quote that closes the string literal opening at `open`: the first one not escaped; -1 without one. */
const closingQuote = (text: string, open: number): number => {
  let quote = text.indexOf("\"", open + 1)
  while (quote !== -1) {
    let backslashes = 0
    while (text.charCodeAt(quote - 1 - backslashes) === 92) backslashes++
    if (backslashes % 2 === 0) return quote
    quote = text.indexOf("\"", quote + 1)
  }
  return -1
}

/** The position of the first character at or after `from` that is not JSON whitespace. */
const afterSpace = (text: string, from: number): number => {
  let i = from
  for (;;) {
    const code = text.charCodeAt(i)
    if (code !== 32 && code !== 10 && code !== 13 && code !== 9) return i
    i++
  }
}

const colonFollows = (text: string, from: number): boolean => text.charCodeAt(afterSpace(text, from)) === 58

/** The value of JSON `text`; throws a `SyntaxError` as `JSON.parse` does for text that is not JSON. */
export const parseJson = (text: string): unknown => hasEscapedKey(text) ? parseSlowly(text) : JSON.parse(text)

/** `parseJson` of a text column that may be null. */
export const parseJsonOrNull = (text: string | null): unknown => text === null ? null : parseJson(text)

/** The JSON object in `text`, or undefined when the text is not JSON or holds another kind of value. */
export const jsonObjectIn = (text: string): Record<string, unknown> | undefined => {
  try {
    const value: unknown = parseJson(text)
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

/** `parseJson` of text known to hold a JSON object (a job's meta, which inserts check). */
export const parseJsonObject = (text: string): Record<string, unknown> => parseJson(text) as Record<string, unknown>

const numberToken = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y

class Reader {
  readonly text: string
  index = 0
  constructor(text: string) {
    this.text = text
  }

  fail(expected: string): never {
    throw new SyntaxError(`Expected ${expected} at position ${this.index} of JSON text`)
  }

  skipSpace(): void {
    this.index = afterSpace(this.text, this.index)
  }

  number(): number {
    numberToken.lastIndex = this.index
    const match = numberToken.exec(this.text)
    if (match === null) return this.fail("a JSON value")
    this.index = numberToken.lastIndex
    return Number(match[0])
  }

  /**
   * A string literal, decoded by `JSON.parse` as a value (values are never
   * guessed, and it checks the escapes); its end found by `closingQuote`, as
   * a pattern would run out of backtracking room on millions of escapes.
   */
  string(): string {
    if (this.text.charCodeAt(this.index) !== 34) this.fail("a string")
    const close = closingQuote(this.text, this.index)
    if (close === -1) this.fail("the end of a string")
    const literal = this.text.slice(this.index, close + 1)
    this.index = close + 1
    return JSON.parse(literal) as string
  }

  /** A member's key and its colon. */
  key(): string {
    this.skipSpace()
    const key = this.string()
    this.skipSpace()
    if (this.text.charCodeAt(this.index++) !== 58) this.fail("\":\"")
    return key
  }

  literal(word: string, value: unknown): unknown {
    if (!this.text.startsWith(word, this.index)) return this.fail("a JSON value")
    this.index += word.length
    return value
  }

  /** A value that is not an array or object, at the current position. */
  scalar(code: number): unknown {
    switch (code) {
      case 34: // "
        return this.string()
      case 116: // t
        return this.literal("true", true)
      case 102: // f
        return this.literal("false", false)
      case 110: // n
        return this.literal("null", null)
      default:
        return this.number()
    }
  }

  /** After a member or element: true at the closing `close`, false after a comma. */
  end(close: number): boolean {
    this.skipSpace()
    const code = this.text.charCodeAt(this.index++)
    if (code === close) return true
    if (code !== 44) this.fail(`"," or "${String.fromCharCode(close)}"`)
    return false
  }
}

/** Sets a member as JSON.parse does: an own "__proto__" key too, not a change of prototype. */
const setMember = (object: Record<string, unknown>, key: string, value: unknown): void => {
  if (key === "__proto__") {
    Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true })
  } else object[key] = value
}

/**
 * The parser for text with escaped keys. It keeps the arrays and objects
 * being filled on a stack of its own rather than recursing, so nesting as
 * deep as PostgreSQL stores (thousands of levels) cannot overflow the call
 * stack.
 */
const parseSlowly = (text: string): unknown => {
  const reader = new Reader(text)
  /** The arrays and objects being filled, innermost last, and for an object the key of the member being read. */
  const open: Array<Array<unknown> | Record<string, unknown>> = []
  const keys: Array<string> = []
  for (;;) {
    reader.skipSpace()
    const code = text.charCodeAt(reader.index)
    let value: unknown
    if (code === 123 || code === 91) {
      const close = code === 123 ? 125 : 93
      const container = code === 123 ? {} : []
      reader.index++
      reader.skipSpace()
      if (text.charCodeAt(reader.index) !== close) {
        open.push(container)
        keys.push(code === 123 ? reader.key() : "")
        continue
      }
      reader.index++
      value = container
    } else value = reader.scalar(code)
    // A value is complete: it goes into its container, which may then be complete in turn.
    for (;;) {
      const container = open.at(-1)
      if (container === undefined) {
        reader.skipSpace()
        if (reader.index !== text.length) reader.fail("the end")
        return value
      }
      const isArray = Array.isArray(container)
      if (isArray) container.push(value)
      else setMember(container, keys.at(-1)!, value)
      if (!reader.end(isArray ? 93 : 125)) {
        if (!isArray) keys[keys.length - 1] = reader.key()
        break
      }
      open.pop()
      keys.pop()
      value = container
    }
  }
}
