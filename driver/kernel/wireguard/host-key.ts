/**
 * This host's WireGuard key pair (encrypted networks, README "Encrypted
 * networks"). The private key is made here, on first start, and never leaves
 * the host: it lives in one file of the host-private state folder (mode 0600
 * in a 0700 folder), is handed to WireGuard as that file's path, and is in no
 * log, no store record and no command line. Only the public key is published
 * (in this host's liveness record), so peers can be configured from the store.
 *
 * Keys are X25519, as WireGuard's: node:crypto makes and derives them (no
 * `wg genkey` process, no key on a pipe). The file holds the key the way
 * `wg genkey` prints it (base64 of the 32 raw bytes, one line), so `wg set …
 * private-key FILE` reads it as is.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { messageOf } from "../../../lib/errors.js";
import { isWireGuardKey } from "../../../lib/wireguard-key.js";

export interface HostKey {
  /** Where the private key is (what `wg set … private-key` is given). */
  privateKeyFile: string;
  /** The public key, base64 (44 characters), as WireGuard writes it. */
  publicKey: string;
}

/** Why the key could not be read or made: which file, and the cause. */
export class HostKeyError extends Error {
  constructor(
    readonly file: string,
    what: string,
    options?: { cause?: unknown },
  ) {
    super(`WireGuard host key ${file}: ${what}`, options);
  }
}

/** DER prefix of an X25519 private key in PKCS#8 (RFC 8410): the 32 raw bytes follow. */
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
/** DER prefix of an X25519 public key in SPKI: the 32 raw bytes follow. */
const SPKI_X25519_LENGTH = 12;

export { isWireGuardKey };

/** The public key (base64) of a private key given as WireGuard writes it. */
export function publicKeyOf(privateKeyBase64: string): string {
  const raw = Buffer.from(privateKeyBase64, "base64");
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: "der", type: "pkcs8" });
  return rawPublic(createPublicKey(key));
}

function rawPublic(key: KeyObject): string {
  return key.export({ format: "der", type: "spki" }).subarray(SPKI_X25519_LENGTH).toString("base64");
}

/**
 * This host's key: the one in `dir/private.key`, or a new one written there
 * first. A file that is not a key, or that others can read, is refused rather
 * than replaced: replacing it would change the host's identity under its peers
 * without anyone asking.
 */
export async function loadOrCreateHostKey(dir: string): Promise<HostKey> {
  const file = path.join(dir, "private.key");
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
  } catch (e) {
    throw new HostKeyError(file, `cannot make its folder: ${messageOf(e)}`, { cause: e });
  }
  const existing = await stat(file).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
  if (existing !== undefined) {
    if ((existing.mode & 0o077) !== 0)
      throw new HostKeyError(file, `others can read it (mode ${(existing.mode & 0o777).toString(8)}): chmod 600 it, or remove it for a new key`);
    const text = (await readFile(file, "utf8")).trim();
    if (!isWireGuardKey(text)) throw new HostKeyError(file, "is not a WireGuard private key (base64 of 32 bytes): remove it for a new key");
    return { privateKeyFile: file, publicKey: publicKeyOf(text) };
  }
  return writeNewKey(file);
}

/**
 * The private key the file holds now (`replaceHostKey` may have changed it),
 * or undefined when there is no file. Only for keeping it out of what the
 * plugin hands out (`tsoverlay support-bundle`): it is never written anywhere.
 */
export async function readPrivateKey(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, "utf8")).trim();
    return text === "" ? undefined : text;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new HostKeyError(file, `cannot read it: ${messageOf(e)}`, { cause: e });
  }
}

/**
 * A new key for this host, in place of the old one (`tsoverlay rotate-key`):
 * written beside it and renamed over it, so the file always holds one whole key.
 */
export async function replaceHostKey(dir: string): Promise<HostKey> {
  return writeNewKey(path.join(dir, "private.key"));
}

async function writeNewKey(file: string): Promise<HostKey> {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const raw = privateKey.export({ format: "der", type: "pkcs8" }).subarray(PKCS8_X25519.length).toString("base64");
  // Written under another name and renamed: a crash leaves no half key where the key belongs.
  const tmp = `${file}.new`;
  try {
    await rm(tmp, { force: true });
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(`${raw}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new HostKeyError(file, `cannot write it: ${messageOf(e)}`, { cause: e });
  }
  return { privateKeyFile: file, publicKey: rawPublic(publicKey) };
}
