/** A WireGuard key as WireGuard writes it: base64 of exactly 32 bytes (44 characters, the last one "="). */
const KEY_TEXT = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

export function isWireGuardKey(text: string): boolean {
  return KEY_TEXT.test(text);
}
