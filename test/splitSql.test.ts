import { assert, describe, it } from "@effect/vitest"
import { splitSql } from "../src/internal/splitSql.ts"

describe("splitSql", () => {
  it("splits at top-level semicolons only", () => {
    const script = `
      -- a comment; with a semicolon
      CREATE TABLE t (a text DEFAULT 'x;y');
      /* block; comment */
      DO $body$ BEGIN PERFORM 1; END $body$;
      SELECT "weird;name" FROM t;
      SELECT $$;$$`
    const statements = splitSql(script)
    assert.strictEqual(statements.length, 4)
    assert.include(statements[0]!, "DEFAULT 'x;y'")
    assert.include(statements[1]!, "PERFORM 1; END $body$")
    assert.include(statements[2]!, "\"weird;name\"")
    assert.strictEqual(statements[3], "SELECT $$;$$")
  })

  it("drops empty and comment-only pieces", () => {
    assert.deepStrictEqual(splitSql(";; -- nothing\n;"), [])
  })
})
