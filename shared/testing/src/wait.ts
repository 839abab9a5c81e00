/**
 * Poll `probe` until it returns a value, or fail with `what`. `undefined`, `null` and `false`
 * all mean "not yet": a probe written `cond || null` or `a === b` must wait, not return at once.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<Exclude<T, false | null>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== null && v !== false) return v as Exclude<T, false | null>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String((last as Error).message ?? last)}` : ""}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
