/**
 * The Consul settings, with the meanings the consul CLI and its Go API client
 * give them, turned into the typed connection the store adapter takes: the
 * address parsed, the CA, client certificate, key and token files read and
 * checked now, so that a wrong path or a file that is not what it should be
 * stops the start with the setting and the file named — never the contents.
 *
 * Precedence follows Consul's client (api.NewClient, go-rootcerts):
 * CONSUL_HTTP_TOKEN_FILE, when it holds a token, wins over CONSUL_HTTP_TOKEN;
 * CONSUL_CACERT wins over CONSUL_CAPATH; a client certificate needs its key.
 * Files are read once, at start: a rotated token or certificate takes a
 * plugin restart, as it takes a new client in Consul's own tools.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parseConsulAddress, type ConsulConnection, type ConsulTls } from "../../driver/store/consul-connection.js";
import { messageOf } from "../../lib/errors.js";
import { failure, success, type Result } from "../../lib/result.js";
import { Secret } from "../../lib/secret.js";

/** The settings as given (empty ones already dropped), booleans as Go's strconv.ParseBool reads them. */
export interface ConsulEnv {
  CONSUL_HTTP_ADDR?: string | undefined;
  CONSUL_HTTP_TOKEN?: string | undefined;
  CONSUL_HTTP_TOKEN_FILE?: string | undefined;
  CONSUL_HTTP_SSL?: boolean | undefined;
  CONSUL_HTTP_SSL_VERIFY?: boolean | undefined;
  CONSUL_CACERT?: string | undefined;
  CONSUL_CAPATH?: string | undefined;
  CONSUL_CLIENT_CERT?: string | undefined;
  CONSUL_CLIENT_KEY?: string | undefined;
  CONSUL_TLS_SERVER_NAME?: string | undefined;
}

export interface ConsulSettings {
  /** undefined: no CONSUL_HTTP_ADDR, the embedded single-host store. */
  connection: ConsulConnection | undefined;
  /** Settings that take effect in a way the operator may not expect, to be logged at start. */
  warnings: string[];
}

/** A setting that cannot be used; its message names the setting (and the file). */
class SettingError extends Error {}

const TLS_SETTINGS = ["CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME", "CONSUL_HTTP_SSL_VERIFY"] as const;
/** Every Consul setting read here (config.json declares each, the README documents each). */
export const CONSUL_SETTINGS = ["CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_HTTP_SSL", ...TLS_SETTINGS] as const;

export function consulSettings(env: ConsulEnv): Result<ConsulSettings> {
  try {
    return success(readConsulSettings(env));
  } catch (err) {
    if (err instanceof SettingError) return failure(err.message);
    throw err;
  }
}

function readConsulSettings(env: ConsulEnv): ConsulSettings {
  const warnings: string[] = [];
  const addr = env.CONSUL_HTTP_ADDR;
  if (addr === undefined) {
    const given = CONSUL_SETTINGS.filter((name) => env[name] !== undefined);
    if (given.length > 0) warnings.push(`${given.join(", ")} set but CONSUL_HTTP_ADDR is empty: the embedded single-host store is used, not Consul`);
    return { connection: undefined, warnings };
  }
  let endpoint;
  try {
    endpoint = parseConsulAddress(addr, env.CONSUL_HTTP_SSL ?? false);
  } catch (err) {
    throw new SettingError(`CONSUL_HTTP_ADDR: ${messageOf(err)}`);
  }
  const tls = readTls(env, warnings);
  if (!endpoint.https) {
    const unused = TLS_SETTINGS.filter((name) => env[name] !== undefined);
    if (unused.length > 0)
      warnings.push(`${unused.join(", ")} set but Consul is reached over plain http: they are not used (give an https:// address or set CONSUL_HTTP_SSL=true)`);
  } else if (!tls.verify) {
    warnings.push(
      "CONSUL_HTTP_SSL_VERIFY=false: the Consul agent's certificate is not verified; anyone on the path can pose as the agent and read the ACL token",
    );
  }
  const token = readToken(env, warnings);
  return { connection: { endpoint, tls, ...(token === undefined ? {} : { token }) }, warnings };
}

function readTls(env: ConsulEnv, warnings: string[]): ConsulTls {
  const tls: ConsulTls = { verify: env.CONSUL_HTTP_SSL_VERIFY ?? true };
  if (env.CONSUL_CACERT !== undefined) {
    tls.ca = certificatesIn("CONSUL_CACERT", env.CONSUL_CACERT).join("\n");
    if (env.CONSUL_CAPATH !== undefined) warnings.push("CONSUL_CAPATH is not used: CONSUL_CACERT is set and wins, as in Consul's client");
  } else if (env.CONSUL_CAPATH !== undefined) {
    tls.ca = caPathCertificates(env.CONSUL_CAPATH).join("\n");
  }
  const certFile = env.CONSUL_CLIENT_CERT;
  const keyFile = env.CONSUL_CLIENT_KEY;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new SettingError(
      `${certFile === undefined ? "CONSUL_CLIENT_KEY" : "CONSUL_CLIENT_CERT"} is set without ${certFile === undefined ? "CONSUL_CLIENT_CERT" : "CONSUL_CLIENT_KEY"}: a client certificate needs both`,
    );
  }
  if (certFile !== undefined && keyFile !== undefined) tls.client = clientCertificate(certFile, keyFile);
  if (env.CONSUL_TLS_SERVER_NAME !== undefined) tls.serverName = serverName(env.CONSUL_TLS_SERVER_NAME);
  return tls;
}

/** As Consul's client: a port after the name is dropped ("server.dc1.consul:8501" → "server.dc1.consul"). */
function serverName(text: string): string {
  const trimmed = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(trimmed);
  if (bracketed) return bracketed[1]!;
  const hostPort = /^([^:]+):\d+$/.exec(trimmed);
  const name = hostPort ? hostPort[1]! : trimmed;
  if (name === "" || /[\s/]/.test(name)) throw new SettingError(`CONSUL_TLS_SERVER_NAME: ${JSON.stringify(text)} is not a host name`);
  return name;
}

/** The CA file's certificates, each checked; at least one. */
function certificatesIn(setting: string, file: string): string[] {
  const text = readSettingFile(setting, file);
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new SettingError(`${setting}: ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new SettingError(`${setting}: certificate ${i + 1} in ${file} does not parse (${codeOrMessage(err)})`);
    }
  });
  return blocks;
}

/** Every file under the folder (recursively, as go-rootcerts walks it) must hold certificates. */
function caPathCertificates(dir: string): string[] {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    throw new SettingError(`CONSUL_CAPATH: cannot read ${dir} (${codeOrMessage(err)})`);
  }
  if (!isDir) throw new SettingError(`CONSUL_CAPATH: ${dir} is not a folder (a single CA file goes in CONSUL_CACERT)`);
  const certificates = filesUnder(dir).flatMap((file) => certificatesIn("CONSUL_CAPATH", file));
  if (certificates.length === 0) throw new SettingError(`CONSUL_CAPATH: ${dir} holds no certificate files`);
  return certificates;
}

/** Regular files (symbolic links followed) under `dir`, sorted; folders reached through a link are left out, so a link cannot loop. */
function filesUnder(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw new SettingError(`CONSUL_CAPATH: cannot read ${dir} (${codeOrMessage(err)})`);
  }
  return entries
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((entry) => {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) return filesUnder(file);
      if (entry.isSymbolicLink()) {
        try {
          return statSync(file).isFile() ? [file] : [];
        } catch (err) {
          throw new SettingError(`CONSUL_CAPATH: cannot read ${file} (${codeOrMessage(err)})`);
        }
      }
      return entry.isFile() ? [file] : [];
    });
}

function clientCertificate(certFile: string, keyFile: string): { cert: string; key: Secret } {
  const blocks = certificatesIn("CONSUL_CLIENT_CERT", certFile);
  const keyText = readSettingFile("CONSUL_CLIENT_KEY", keyFile);
  let key;
  try {
    key = createPrivateKey(keyText);
  } catch (err) {
    throw new SettingError(`CONSUL_CLIENT_KEY: ${keyFile} is not an unencrypted PEM private key (${codeOrMessage(err)})`);
  }
  if (!new X509Certificate(blocks[0]!).checkPrivateKey(key)) {
    throw new SettingError(`CONSUL_CLIENT_KEY: the key in ${keyFile} does not belong to the certificate in ${certFile} (CONSUL_CLIENT_CERT)`);
  }
  return { cert: blocks.join("\n"), key: new Secret(keyText) };
}

/**
 * CONSUL_HTTP_TOKEN_FILE, when it holds a token, wins over CONSUL_HTTP_TOKEN:
 * Consul's Go client reads the file into the token "even if a Token is
 * configured", and the CLI's -token-file is used "instead of" -token or
 * CONSUL_HTTP_TOKEN. An empty file leaves CONSUL_HTTP_TOKEN in force, as there.
 */
function readToken(env: ConsulEnv, warnings: string[]): Secret | undefined {
  const given = env.CONSUL_HTTP_TOKEN;
  const file = env.CONSUL_HTTP_TOKEN_FILE;
  if (given !== undefined) checkToken(given, "CONSUL_HTTP_TOKEN");
  if (file === undefined) return given === undefined ? undefined : new Secret(given);
  const fromFile = readSettingFile("CONSUL_HTTP_TOKEN_FILE", file).trim();
  if (fromFile === "") {
    warnings.push(
      `CONSUL_HTTP_TOKEN_FILE: ${file} is empty: ${given === undefined ? "requests carry no ACL token (the agent's default token applies)" : "CONSUL_HTTP_TOKEN is used"}`,
    );
    return given === undefined ? undefined : new Secret(given);
  }
  checkToken(fromFile, `CONSUL_HTTP_TOKEN_FILE (${file})`);
  if (given !== undefined) {
    warnings.push(
      "CONSUL_HTTP_TOKEN is not used: CONSUL_HTTP_TOKEN_FILE holds a token and wins, as in Consul's client; clear CONSUL_HTTP_TOKEN so that `docker plugin inspect` does not show it",
    );
  }
  return new Secret(fromFile);
}

/** An HTTP header value of one line; the token itself never appears in the error. */
function checkToken(token: string, where: string): void {
  if (!/^[\x21-\x7e]+$/.test(token)) throw new SettingError(`${where}: the token has spaces, line breaks or other characters an ACL token does not have`);
}

function readSettingFile(setting: string, file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new SettingError(`${setting}: cannot read ${file} (${codeOrMessage(err)})`);
  }
}

/** A system or OpenSSL error's code ("ENOENT", "ERR_OSSL_PEM_NO_START_LINE"), else its words. */
function codeOrMessage(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : messageOf(err);
}
