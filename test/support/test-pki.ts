/**
 * A throwaway PKI for TLS tests, made with the `openssl` command in a temp
 * folder: Node can check and use X.509 certificates but cannot issue them, and
 * the openssl CLI is on every host that builds this project (no new
 * dependency). A missing openssl fails the test that needs it; it is not skipped.
 *
 * - `ca`: the private CA; `server`: signed by it for DNS server.dc1.consul and
 *   localhost only (no IP: a client that connects to 127.0.0.1 must be told
 *   the name to check, as with many Consul agent certificates); `client`:
 *   signed by it for client authentication (Consul's verify_incoming).
 * - `otherCa` and `otherClient`: a second, unrelated CA and a client
 *   certificate it signed.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface KeyPair {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface TestPki {
  dir: string;
  ca: KeyPair;
  server: KeyPair;
  client: KeyPair;
  otherCa: KeyPair;
  otherClient: KeyPair;
  remove(): void;
}

export const SERVER_NAMES = ["server.dc1.consul", "localhost"];

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args[0]} failed (the TLS tests need the openssl command): ${(err as Error).message}\n${stderr}`, { cause: err });
  }
}

function pair(dir: string, name: string): KeyPair {
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  return {
    certFile,
    keyFile,
    get cert() {
      return readFileSync(certFile, "utf8");
    },
    get key() {
      return readFileSync(keyFile, "utf8");
    },
  };
}

function makeCa(dir: string, name: string, cn: string): KeyPair {
  const p = pair(dir, name);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n");
  openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    p.keyFile,
    "-out",
    p.certFile,
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
    "-config",
    ext,
    "-extensions",
    "v3",
  ]);
  return p;
}

function makeLeaf(dir: string, name: string, cn: string, ca: KeyPair, extensions: string): KeyPair {
  const p = pair(dir, name);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `basicConstraints=CA:FALSE\n${extensions}\n`);
  openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p.keyFile, "-out", csr, "-subj", `/CN=${cn}`]);
  openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.certFile,
    "-CAkey",
    ca.keyFile,
    "-set_serial",
    String(Date.now()),
    "-days",
    "2",
    "-extfile",
    ext,
    "-out",
    p.certFile,
  ]);
  return p;
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "tso-pki-"));
  const ca = makeCa(dir, "ca", "tsoverlay test CA");
  const otherCa = makeCa(dir, "other-ca", "some other CA");
  const server = makeLeaf(
    dir,
    "server",
    "server.dc1.consul",
    ca,
    `subjectAltName=${SERVER_NAMES.map((n) => `DNS:${n}`).join(",")}\nextendedKeyUsage=serverAuth`,
  );
  const client = makeLeaf(dir, "client", "tsoverlay client", ca, "extendedKeyUsage=clientAuth");
  const otherClient = makeLeaf(dir, "other-client", "stranger", otherCa, "extendedKeyUsage=clientAuth");
  return { dir, ca, server, client, otherCa, otherClient, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
