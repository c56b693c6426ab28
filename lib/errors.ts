/**
 * What went wrong, in words, from whatever was thrown: an Error's message, an
 * error-like object's (one from another realm, a native binding's), or the
 * thrown value itself as text.
 */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "object" && e !== null && typeof (e as { message?: unknown }).message === "string") return (e as { message: string }).message;
  return String(e);
}
