/**
 * A private redis-server on a free port, for tests that stop or restart Redis itself, or that need an ACL
 * user or TLS (certificates made with `openssl` in the server's temporary folder).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

const waitReady = async (proc: ChildProcess) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("redis-server did not start within 10 s")), 10_000)
    let log = ""
    proc.stdout!.on("data", (chunk: Buffer) => {
      log += chunk.toString()
      if (log.includes("Ready to accept connections")) {
        clearTimeout(timer)
        resolve()
      }
    })
    proc.once("exit", (code) => reject(new Error(`redis-server exited with ${code}:\n${log}`)))
  })

/** Certificates a TLS server and its clients use (PEM files in the server's folder). */
export interface TestCertificates {
  /** The CA that signed the server's (and the client's) certificate. */
  readonly caFile: string
  readonly serverCertFile: string
  readonly serverKeyFile: string
  /** A client certificate signed by the same CA, for `tls-auth-clients yes`. */
  readonly clientCertFile: string
  readonly clientKeyFile: string
  /** Another CA, which signed none of these: a client trusting only it must refuse the server. */
  readonly otherCaFile: string
}

const openssl = (dir: string, args: ReadonlyArray<string>) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" })

// EC keys: generated in milliseconds, unlike RSA.
const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

/** Makes a CA, a server certificate for 127.0.0.1/localhost and a client certificate, in `dir`. */
export const makeCertificates = (dir: string): TestCertificates => {
  const ca = (name: string) => {
    openssl(dir, ["req", "-x509", "-new", ...newKey, "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=taskiq test ${name}`])
  }
  ca("ca")
  ca("other-ca")
  const signed = (name: string, subject: string, extensions: string) => {
    writeFileSync(join(dir, `${name}.ext`), extensions)
    openssl(dir, ["req", "-new", ...newKey, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject])
    openssl(dir, [
      "x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
      "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`
    ])
  }
  signed("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
  signed("client", "/CN=taskiq-test-client", "extendedKeyUsage=clientAuth\n")
  return {
    caFile: join(dir, "ca.crt"),
    serverCertFile: join(dir, "server.crt"),
    serverKeyFile: join(dir, "server.key"),
    clientCertFile: join(dir, "client.crt"),
    clientKeyFile: join(dir, "client.key"),
    otherCaFile: join(dir, "other-ca.crt")
  }
}

/** Options of a private server. */
export interface PrivateRedisOptions {
  readonly appendOnly?: boolean | undefined
  /** An ACL user allowed everything; the default user is disabled, so nothing works without logging in. */
  readonly acl?: { readonly user: string; readonly password: string } | undefined
  /** TLS only (the plain port is closed), with certificates made for the test; `clientAuth` asks clients for theirs. */
  readonly tls?: boolean | { readonly clientAuth?: boolean | undefined } | undefined
  /** Start the server at once (default); with `false`, the port is chosen but nothing listens until `start`. */
  readonly startNow?: boolean | undefined
}

/** A private server. `stop` and `start` let a test take Redis away and bring it back on the same port. */
export interface PrivateRedis {
  readonly port: number
  /** The URL that works: `rediss://` with TLS, with the ACL user's name and password when there is one. */
  readonly url: string
  /** The same URL with other credentials (`user:password`, or "" for none). */
  readonly urlWith: (credentials: string) => string
  /** The certificates, when the server speaks TLS. */
  readonly certificates: TestCertificates | undefined
  readonly stop: Effect.Effect<void>
  readonly start: Effect.Effect<void>
}

/** Starts a private redis-server for the scope; stopped (by its pid) when the scope closes. */
export const privateRedis = (options: PrivateRedisOptions = {}) =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const dir = mkdtempSync(join(tmpdir(), "taskiq-redis-"))
    const certificates = options.tls ? makeCertificates(dir) : undefined
    const clientAuth = typeof options.tls === "object" && options.tls.clientAuth === true
    const args = [
      "--bind", "127.0.0.1", "--save", "", "--dir", dir, "--appendonly", options.appendOnly ? "yes" : "no",
      ...(certificates === undefined ? ["--port", String(port)] : [
        "--port", "0", "--tls-port", String(port),
        "--tls-cert-file", certificates.serverCertFile, "--tls-key-file", certificates.serverKeyFile,
        "--tls-ca-cert-file", certificates.caFile, "--tls-auth-clients", clientAuth ? "yes" : "no"
      ]),
      ...(options.acl === undefined ? [] : [
        "--user", options.acl.user, "on", `>${options.acl.password}`, "~*", "&*", "+@all",
        "--user", "default", "off"
      ])
    ]
    let proc: ChildProcess | undefined
    const start = Effect.promise(async () => {
      proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "inherit"] })
      await waitReady(proc)
    })
    const stop = Effect.promise(async () => {
      const p = proc
      proc = undefined
      if (!p || p.exitCode !== null) return
      await new Promise<void>((resolve) => {
        p.once("exit", () => resolve())
        p.kill("SIGKILL")
      })
    })
    yield* Effect.acquireRelease(
      options.startNow === false ? Effect.void : start,
      () => stop.pipe(Effect.andThen(Effect.sync(() => rmSync(dir, { recursive: true, force: true }))))
    )
    const scheme = certificates === undefined ? "redis" : "rediss"
    const urlWith = (credentials: string) => `${scheme}://${credentials ? `${credentials}@` : ""}127.0.0.1:${port}/0`
    const url = urlWith(options.acl === undefined ? "" : `${options.acl.user}:${options.acl.password}`)
    return { port, url, urlWith, certificates, stop, start } satisfies PrivateRedis
  })
