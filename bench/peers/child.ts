/**
 * A child process of the comparison's two-process drain (W3c). It opens the
 * peer's queue, says `ready`, starts consuming with the given limit when the
 * parent writes `go`, and on `stop` stops gracefully (its jobs finished and
 * acked) and prints the number of every job it ran as one JSON line
 * (`ran [...]`) before exiting.
 *
 * Usage: BENCH_DATABASE_URL=... node bench/peers/child.ts <peer> <schema> <limit>
 */
import { createInterface } from "node:readline"
import { peerByKey } from "./registry.ts"
import type { Consumer } from "./types.ts"

const [key = "", schema = "", limitText = ""] = process.argv.slice(2)
const url = process.env["BENCH_DATABASE_URL"] ?? ""

const main = async () => {
  const peer = peerByKey(key)
  const limit = Number(limitText)
  if (peer === undefined || schema === "" || url === "" || !Number.isInteger(limit)) {
    throw new Error("usage: BENCH_DATABASE_URL=... node bench/peers/child.ts <peer> <schema> <limit>")
  }
  const queue = await peer.open(url, schema)
  const ran: Array<number> = []
  let consumer: Promise<Consumer> | undefined
  const lines = createInterface({ input: process.stdin })
  process.stdout.write("ready\n")
  for await (const line of lines) {
    if (line === "go") {
      consumer = queue.consume({ limit, latency: false, onRun: (job) => void ran.push(job.i) })
    } else if (line === "stop") {
      if (consumer !== undefined) await (await consumer).stop()
      await queue.close()
      // Wait until the line is out: `process.exit` would cut off a long one still in the pipe.
      await new Promise<void>((resolve) => process.stdout.write(`ran ${JSON.stringify(ran)}\n`, () => resolve()))
      break
    }
  }
  lines.close()
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`child ${key}: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  }
)
