/**
 * The ceiling for the threads spike: the same hashing on bare worker_threads
 * (plain postMessage, no RPC, no fibers), on 1 then 2 threads, with each job's CPU time taken in
 * its own thread. If 2 threads are not ~2x here, no pool can be on this
 * machine at this moment. `node bench/threads/bareBaseline.ts [rounds] [jobs]`
 */
import * as os from "node:os"
import { isMainThread, parentPort, Worker } from "node:worker_threads"
import { hashRounds } from "./workers.ts"

if (!isMainThread) {
  parentPort!.on("message", (rounds: number) => {
    const cpu = process.threadCpuUsage()
    const wall = performance.now()
    hashRounds("bare", rounds)
    const used = process.threadCpuUsage(cpu)
    parentPort!.postMessage([performance.now() - wall, (used.user + used.system) / 1000])
  })
} else {
  const rounds = Number(process.argv[2] ?? 8000)
  const jobs = Number(process.argv[3] ?? 20)
  const threads = [new Worker(new URL(import.meta.url)), new Worker(new URL(import.meta.url))]
  const run = (thread: Worker) =>
    new Promise<[number, number]>((resolve) => {
      thread.once("message", resolve)
      thread.postMessage(rounds)
    })
  for (const thread of threads) for (let i = 0; i < 3; i++) await run(thread)
  for (const size of [1, 2, 1, 2]) {
    const start = performance.now()
    let wall = 0
    let cpu = 0
    await Promise.all(threads.slice(0, size).map(async (thread) => {
      for (let i = 0; i < jobs / size; i++) {
        const [w, c] = await run(thread)
        wall += w
        cpu += c
      }
    }))
    console.log(
      `${size} thread(s): ${jobs} jobs in ${(performance.now() - start).toFixed(0)} ms; per job ` +
        `${(wall / jobs).toFixed(1)} ms wall, ${(cpu / jobs).toFixed(1)} ms CPU; load ${os.loadavg()[0]!.toFixed(2)}`
    )
  }
  for (const thread of threads) await thread.terminate()
}
