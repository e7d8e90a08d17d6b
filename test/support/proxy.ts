/**
 * A fault-injecting TCP proxy on 127.0.0.1 in front of a PostgreSQL server,
 * for tests that need a network that breaks in ways a server restart or
 * `pg_terminate_backend` cannot show: connections cut at once, connections
 * that stay open but carry nothing (a "black hole", as after a partition or a
 * NAT that forgot the flow), a port that refuses new connections, and a link
 * that holds bytes back in one direction and then delivers them (to order a
 * node's statement against another connection's), also on the connections
 * of one statement only.
 *
 * `startProxy(targetUrl)` is a scoped resource: closing the scope closes the
 * listener and every connection.
 */
import { Effect, Scope } from "effect"
import * as Net from "node:net"

export interface Proxy {
  /** `targetUrl` with host and port replaced by the proxy's (same credentials, database, parameters). */
  readonly url: string
  /** Destroys every open connection (both sides) at once. New connections are forwarded as before. */
  readonly cut: Effect.Effect<void>
  /**
   * From now on nothing is forwarded: open connections stay open but bytes in
   * both directions are read and dropped; new connections are accepted and
   * treated the same. Connections black-holed once stay dead after `restore`.
   */
  readonly blackhole: Effect.Effect<void>
  /**
   * From now on the server's replies are dropped while the client's bytes still
   * reach the server: statements run and commit, and their results never
   * arrive (a lost COMMIT reply). Affected connections stay that way.
   */
  readonly dropReplies: Effect.Effect<void>
  /**
   * From now on the client's bytes are kept, in order, instead of forwarded
   * (on open and new connections): statements sent meanwhile have not reached
   * the server, as on a slow or congested link, until `release`.
   */
  readonly holdRequests: Effect.Effect<void>
  /**
   * From now on the server's bytes are kept, in order, instead of forwarded:
   * statements run and commit, and their results arrive only at `release`.
   */
  readonly holdReplies: Effect.Effect<void>
  /**
   * From now on the server's bytes are kept on each connection whose client
   * sends `text` (a statement's text or a parameter), from that moment: the
   * reply to that statement, and whatever follows on its connection, arrive
   * only at `release`; other connections are untouched (one slow link).
   */
  readonly holdRepliesAfter: (text: string) => Effect.Effect<void>
  /**
   * From now on a connection whose client sends `text` is black-holed from
   * that moment, those bytes included: the statement never reaches the server
   * (a link that died just before it). Other connections are untouched.
   */
  readonly blackholeAfter: (text: string) => Effect.Effect<void>
  /** Forwards every byte kept by a hold, in order, and forwards as before from now on. */
  readonly release: Effect.Effect<void>
  /** Whether the client bytes kept by `holdRequests` contain `text` (a statement's text or a parameter). */
  readonly heldRequestsInclude: (text: string) => Effect.Effect<boolean>
  /** New connections are forwarded normally again (black-holed ones stay dead). */
  readonly restore: Effect.Effect<void>
  /** New connections are destroyed as soon as they arrive (the client sees a reset). */
  readonly refuse: Effect.Effect<void>
  /** New connections are accepted again (undoes `refuse`). */
  readonly accept: Effect.Effect<void>
  /** Client connections open right now. */
  readonly connections: Effect.Effect<number>
  /** Client connections accepted (and not refused) since the start. */
  readonly accepted: Effect.Effect<number>
  /** Stops listening and destroys every connection; also done when the scope closes. */
  readonly close: Effect.Effect<void>
}

interface Link {
  readonly client: Net.Socket
  upstream: Net.Socket | undefined
  dead: boolean
  deaf: boolean
  /** Its server's bytes are kept (it sent the text of `holdRepliesAfter`). */
  holding: boolean
  /** Bytes kept by a hold: the client's and the server's, each in arrival order. */
  readonly keptRequests: Array<Buffer>
  readonly keptReplies: Array<Buffer>
}

const proxyUrl = (targetUrl: string, port: number): string => {
  const url = new URL(targetUrl)
  url.hostname = "127.0.0.1"
  url.port = String(port)
  return url.toString()
}

const target = (targetUrl: string): { readonly host: string; readonly port: number } => {
  const url = new URL(targetUrl)
  return { host: url.hostname === "" ? "127.0.0.1" : url.hostname, port: url.port === "" ? 5432 : Number(url.port) }
}

const listen = (server: Net.Server): Effect.Effect<number> =>
  Effect.callback<number>((resume) => {
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

const shutdown = (server: Net.Server, links: Set<Link>): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    for (const link of links) destroy(link)
    links.clear()
    if (!server.listening) return resume(Effect.void)
    server.close(() => resume(Effect.void))
  })

const destroy = (link: Link): void => {
  link.client.destroy()
  link.upstream?.destroy()
}

/**
 * Starts a proxy in front of the server at `targetUrl` for the scope's life.
 */
export const startProxy = (targetUrl: string): Effect.Effect<Proxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { host, port: targetPort } = target(targetUrl)
    const links = new Set<Link>()
    let blackholed = false
    let repliesDropped = false
    let refusing = false
    let holdingRequests = false
    let holdingReplies = false
    let holdTrigger: Buffer | undefined = undefined
    let blackholeTrigger: Buffer | undefined = undefined
    let accepted = 0

    const forward = (link: Link): void => {
      const upstream = Net.connect({ host, port: targetPort })
      link.upstream = upstream
      upstream.setNoDelay(true)
      upstream.on("error", () => link.client.destroy())
      upstream.on("close", () => link.client.destroy())
      upstream.on("data", (chunk: Buffer) => {
        if (link.dead || link.deaf) return
        if (holdingReplies || link.holding) link.keptReplies.push(chunk)
        else link.client.write(chunk)
      })
      link.client.on("data", (chunk: Buffer) => {
        if (blackholeTrigger !== undefined && chunk.includes(blackholeTrigger)) link.dead = true
        if (link.dead) return
        if (holdTrigger !== undefined && chunk.includes(holdTrigger)) link.holding = true
        if (holdingRequests) link.keptRequests.push(chunk)
        else upstream.write(chunk)
      })
    }

    const server = Net.createServer((client) => {
      if (refusing) {
        client.resetAndDestroy()
        return
      }
      accepted++
      const link: Link = {
        client,
        upstream: undefined,
        dead: blackholed,
        deaf: repliesDropped,
        holding: false,
        keptRequests: [],
        keptReplies: []
      }
      links.add(link)
      client.setNoDelay(true)
      client.on("error", () => {})
      client.on("close", () => {
        links.delete(link)
        link.upstream?.destroy()
      })
      if (link.dead) client.on("data", () => {})
      else forward(link)
    })

    const port = yield* Effect.acquireRelease(listen(server), () => shutdown(server, links))

    return {
      url: proxyUrl(targetUrl, port),
      cut: Effect.sync(() => {
        for (const link of links) destroy(link)
      }),
      blackhole: Effect.sync(() => {
        blackholed = true
        for (const link of links) link.dead = true
      }),
      dropReplies: Effect.sync(() => {
        repliesDropped = true
        for (const link of links) link.deaf = true
      }),
      holdRequests: Effect.sync(() => {
        holdingRequests = true
      }),
      holdReplies: Effect.sync(() => {
        holdingReplies = true
      }),
      blackholeAfter: (text) =>
        Effect.sync(() => {
          blackholeTrigger = Buffer.from(text)
        }),
      holdRepliesAfter: (text) =>
        Effect.sync(() => {
          holdTrigger = Buffer.from(text)
        }),
      release: Effect.sync(() => {
        holdingRequests = false
        holdingReplies = false
        holdTrigger = undefined
        for (const link of links) {
          link.holding = false
          for (const chunk of link.keptRequests.splice(0)) if (!link.dead) link.upstream?.write(chunk)
          for (const chunk of link.keptReplies.splice(0)) if (!link.dead && !link.deaf) link.client.write(chunk)
        }
      }),
      heldRequestsInclude: (text) =>
        Effect.sync(() => {
          const needle = Buffer.from(text)
          for (const link of links) if (Buffer.concat(link.keptRequests).includes(needle)) return true
          return false
        }),
      restore: Effect.sync(() => {
        blackholeTrigger = undefined
        blackholed = false
        repliesDropped = false
      }),
      refuse: Effect.sync(() => {
        refusing = true
      }),
      accept: Effect.sync(() => {
        refusing = false
      }),
      connections: Effect.sync(() => links.size),
      accepted: Effect.sync(() => accepted),
      close: shutdown(server, links)
    }
  })
