/**
 * Plain exported async functions: no declaration needed, a worker runs them through the generic task
 * `kc.exec` (`scheduleAsync(add, 1, 2)` sends this module's name and "add").
 */

/** Adds two numbers. */
export async function add(a: number, b: number): Promise<number> {
  return a + b
}

/** A rejection is the task's failure: the result has `isErr: true` and the error's class and message. */
export async function parseAmount(text: string): Promise<number> {
  const amount = Number(text)
  if (!Number.isFinite(amount)) throw new RangeError(`not an amount: ${JSON.stringify(text)}`)
  return amount
}

/** Nested objects give dotted names on the wire: `text.shout`. */
export const text = {
  shout: async (s: string) => `${s.toUpperCase()}!`
}
