/** This host's WireGuard key pair: made once, kept 0600, only its public half given out. */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { HostKeyError, isWireGuardKey, loadOrCreateHostKey, publicKeyOf } from "../../driver/kernel/wireguard/host-key.js";

const dirs: string[] = [];
const scratch = (): string => {
  const d = mkdtempSync(join(tmpdir(), "tso-hostkey-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const hex64 = (hex: string) => Buffer.from(hex, "hex").toString("base64");

describe("the WireGuard host key", () => {
  it("derives X25519 public keys as RFC 7748 does (its Alice and Bob vectors)", () => {
    expect(publicKeyOf(hex64("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))).toBe(
      hex64("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"),
    );
    expect(publicKeyOf(hex64("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))).toBe(
      hex64("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"),
    );
  });

  it("is made on first start in a 0700 folder, 0600, as wg genkey writes it; the next start reads the same key", async () => {
    const dir = join(scratch(), "wireguard");
    const first = await loadOrCreateHostKey(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(first.privateKeyFile).mode & 0o777).toBe(0o600);
    const text = readFileSync(first.privateKeyFile, "utf8");
    expect(text).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(isWireGuardKey(text.trim())).toBe(true);
    expect(first.publicKey).toBe(publicKeyOf(text.trim()));
    expect(first.publicKey).not.toBe(text.trim());
    const again = await loadOrCreateHostKey(dir);
    expect(again).toEqual(first);
    expect(readFileSync(first.privateKeyFile, "utf8")).toBe(text);
    // Each host its own.
    expect((await loadOrCreateHostKey(join(scratch(), "wireguard"))).publicKey).not.toBe(first.publicKey);
  });

  it("refuses, naming the file, a key others can read and a file that is no key, and leaves both as they are", async () => {
    const dir = scratch();
    const file = join(dir, "private.key");
    const { publicKey } = await loadOrCreateHostKey(dir);
    chmodSync(file, 0o644);
    await expect(loadOrCreateHostKey(dir)).rejects.toThrow(new HostKeyError(file, "others can read it (mode 644): chmod 600 it, or remove it for a new key"));
    writeFileSync(file, "not a key\n", { mode: 0o600 });
    chmodSync(file, 0o600);
    await expect(loadOrCreateHostKey(dir)).rejects.toThrow(/private\.key: is not a WireGuard private key/);
    expect(readFileSync(file, "utf8")).toBe("not a key\n");
    expect(publicKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  });

  it("knows a key as written from anything else", () => {
    expect(isWireGuardKey(hex64("00".repeat(32)))).toBe(true);
    expect(isWireGuardKey(hex64("00".repeat(31)))).toBe(false);
    expect(isWireGuardKey(hex64("00".repeat(33)))).toBe(false);
    expect(isWireGuardKey(`${hex64("00".repeat(32)).slice(0, 42)}B=`)).toBe(false);
    expect(isWireGuardKey("")).toBe(false);
  });
});
