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

// Tasks submitted with this inbox as their reply_to whose result has not been pushed here yet, with when they were
// submitted (performance.now()). A waiter on a backend whose inbox subscription dates from before that time needs no
// catch-up read: the push cannot have come and gone unheard (a reconnect moves the backend's time forward). A task
// missing here (pushed already, forgotten, or never registered) is waited for with the read.
const awaiting = new Map<string, number>()
const maxAwaiting = 10_000

/** Registers a task about to be submitted with this inbox as its reply_to. */
export const expect = (taskId: string): void => {
  // Bounded: the oldest registration goes first (its waiter, if one ever comes, reads the result instead).
  if (awaiting.size >= maxAwaiting) awaiting.delete(awaiting.keys().next().value!)
  awaiting.set(taskId, performance.now())
}

/** A task's result was pushed (or its task will have none pushed): waiters from now on read it. */
export const forget = (taskId: string): void => void awaiting.delete(taskId)

/** When the task was submitted, if it was registered and its result has not been pushed since. */
export const submittedAt = (taskId: string): number | undefined => awaiting.get(taskId)

/** The task id of a result key (`[<prefix>:]<task id>`; task ids are 32 hex digits). */
export const taskIdOfKey = (key: string): string => key.slice(-32)

/** The inbox message: the result key, a newline, the result's JSON. */
export const split = (message: string): readonly [key: string, json: string] | undefined => {
  const at = message.indexOf("\n")
  return at < 0 ? undefined : [message.slice(0, at), message.slice(at + 1)]
}
