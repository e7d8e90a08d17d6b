/** The job queues the comparison benchmark runs next to effect-oban. */
import { bullmq } from "./bullmq.ts"
import { graphileWorker } from "./graphile.ts"
import { pgBoss } from "./pgboss.ts"
import { rawSql, rawSqlKept } from "./raw.ts"
import type { Peer } from "./types.ts"

export const allPeers: ReadonlyArray<Peer> = [graphileWorker, pgBoss, bullmq, rawSql, rawSqlKept]

export const peerByKey = (key: string): Peer | undefined => allPeers.find((peer) => peer.key === key)
