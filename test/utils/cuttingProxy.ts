/**
 * A loopback TCP proxy in front of a Redis that can break one connection at an exact byte of what Redis sends it:
 * the way to reproduce a connection lost half way through a long reply, which `CLIENT KILL` only hits by chance.
 */
import { createServer, Socket } from "node:net"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface CuttingProxy {
  /** `redis://127.0.0.1:<proxy port>/0`. */
  readonly url: string
  /**
   * Arms one cut: the first connection to send `marker` after the arming (e.g. the name in the CLIENT SETNAME of a
   * reconnect) is closed once Redis has sent it `afterBytes` bytes from then on, exactly those delivered. True once it
   * cut; false if no such connection got that far within `within` ms.
   */
  readonly cut: (marker: string, afterBytes: number, within: number) => Promise<boolean>
}

interface Armed {
  readonly marker: string
  readonly afterBytes: number
  readonly done: (cut: boolean) => void
}

/** A proxy to `127.0.0.1:<port>`, closed with the scope (with every connection through it). */
export const cuttingProxy = (port: number): Effect.Effect<CuttingProxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly proxy: CuttingProxy; readonly close: () => void }>((resume) => {
      const sockets = new Set<Socket>()
      let armed: Armed | undefined
      const server = createServer((client) => {
        const upstream = new Socket()
        sockets.add(client).add(upstream)
        let sent = ""
        let tagged: Armed | undefined
        let received = 0
        const close = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        client.on("data", (chunk: Buffer) => {
          if (armed !== undefined && tagged === undefined) {
            // Only the start of a connection names it; keep a bounded tail so a marker split across chunks is seen.
            sent = (sent + chunk.toString("latin1")).slice(-4096)
            if (sent.includes(armed.marker)) {
              tagged = armed
              received = 0
            }
          }
          upstream.write(chunk)
        })
        upstream.on("data", (chunk: Buffer) => {
          if (tagged !== undefined && tagged === armed) {
            const left = tagged.afterBytes - received
            if (chunk.length >= left) {
              const done = tagged.done
              armed = undefined
              client.end(chunk.subarray(0, left))
              upstream.destroy()
              sockets.delete(upstream)
              done(true)
              return
            }
            received += chunk.length
          }
          client.write(chunk)
        })
        client.on("close", close)
        upstream.on("close", close)
        client.on("error", close)
        upstream.on("error", close)
        upstream.connect(port, "127.0.0.1")
      })
      server.listen(0, "127.0.0.1", () => {
        const proxyPort = (server.address() as { port: number }).port
        resume(Effect.succeed({
          proxy: {
            url: `redis://127.0.0.1:${proxyPort}/0`,
            cut: (marker, afterBytes, within) =>
              new Promise<boolean>((resolve) => {
                const timer = setTimeout(() => {
                  armed = undefined
                  resolve(false)
                }, within)
                armed = {
                  marker,
                  afterBytes,
                  done: (cut) => {
                    clearTimeout(timer)
                    resolve(cut)
                  }
                }
              })
          },
          close: () => {
            server.close()
            for (const s of sockets) s.destroy()
          }
        }))
      })
    }),
    ({ close }) => Effect.sync(close)
  ).pipe(Effect.map(({ proxy }) => proxy))
