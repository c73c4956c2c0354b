/**
 * Plain exported async functions: no declaration needed, a worker runs them through the generic task
 * `kc.exec` (`scheduleAsync(add, 1, 2)` sends this module's name and "add").
 */

/** Adds two numbers. */
export async function add(a: number, b: number): Promise<number> {
  return a + b
}

/** Nested objects give dotted names on the wire: `text.shout`. */
export const text = {
  shout: async (s: string) => `${s.toUpperCase()}!`
}
