/**
 * Message signing: an HMAC-SHA256 over a message's data, carried beside it (the stream field `sig`), so a
 * worker runs only what a holder of the key published. The first key signs; every key is accepted (rotation).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import * as Redacted from "effect/Redacted"

/** Signs with the first key, verifies against all of them. */
export interface Signer {
  readonly sign: (data: string) => string
  /** Whether `signature` is a valid signature of `data` by one of the keys. */
  readonly verify: (data: string, signature: string) => boolean
}

/** A signer over these keys (the first one signs); `undefined` when there is none. */
export const make = (keys: ReadonlyArray<Redacted.Redacted<string> | string>): Signer | undefined => {
  const secrets = keys.map((k) => (typeof k === "string" ? k : Redacted.value(k))).filter((k) => k.length > 0)
  if (secrets.length === 0) return undefined
  const mac = (key: string, data: string) => createHmac("sha256", key).update(data).digest()
  return {
    sign: (data) => mac(secrets[0]!, data).toString("hex"),
    verify: (data, signature) => {
      if (!/^[0-9a-f]{64}$/.test(signature)) return false
      const given = Buffer.from(signature, "hex")
      return secrets.some((key) => timingSafeEqual(mac(key, data), given))
    }
  }
}
