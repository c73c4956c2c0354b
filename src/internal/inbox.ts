/**
 * This process's result inbox: one channel that the Redis result backends of this process subscribe to once a
 * waiter needs it. While it is open, producers ask workers (the `reply_to` label) to push results there too,
 * so a waiter needs neither a SUBSCRIBE nor an UNSUBSCRIBE of its own: a result reaches it one hop after it is
 * stored. Tasks submitted before it opened, or by other processes, are waited for on their own channels.
 */
import { randomUUID } from "node:crypto"

/** The channel prefix of every inbox; a worker pushes only to channels under it. */
export const channelPrefix = "__taskiq_result__:inbox:"

/** This process's inbox channel. */
export const channel = `${channelPrefix}${randomUUID()}`

/** The message label naming the inbox a result is also pushed to. */
export const label = "reply_to"

let open = 0

/** Whether a result backend of this process listens on the inbox (then submissions carry `reply_to`). */
export const isOpen = (): boolean => open > 0

/** A backend started listening (`+1`) or stopped (`-1`). */
export const track = (delta: 1 | -1): void => {
  open += delta
}

/** The inbox a message asks its result to be pushed to, if it names a valid one. */
export const replyChannel = (labels: Readonly<Record<string, unknown>>): string => {
  const to = labels[label]
  return typeof to === "string" && to.startsWith(channelPrefix) ? to : ""
}

/** The inbox message: the result key, a newline, the result's JSON. */
export const split = (message: string): readonly [key: string, json: string] | undefined => {
  const at = message.indexOf("\n")
  return at < 0 ? undefined : [message.slice(0, at), message.slice(at + 1)]
}
