/**
 * How this process reaches its Consul agent, with the meanings the consul CLI
 * and Go API client give CONSUL_HTTP_ADDR, CONSUL_HTTP_SSL and the TLS
 * settings: an address is `host[:port]`, `http(s)://host[:port]` or
 * `unix:///path/to/agent.sock`; https when the scheme says so or
 * CONSUL_HTTP_SSL is true (an explicit http:// does not turn TLS off again, as
 * in the Go client). The settings themselves are read by the composition root;
 * this module gets them typed, the PEM material already loaded.
 *
 * The `consul` package hands every request to Node's http(s) with the client
 * options it knows (lib `papi`: `agent`, `socketPath`, TLS options). We give it
 * our own keep-alive agent carrying the TLS material — Node's agent applies its
 * own options to every connection it makes — and, for a unix socket,
 * `socketPath`, which papi passes to Node instead of host and port.
 */
import http from "node:http";
import https from "node:https";
import type { Secret } from "../../lib/secret.js";

/** Without a port in the address (the consul CLI wants one; the HTTP API's default). */
const DEFAULT_PORT = 8500;

export type ConsulAddress = { transport: "tcp"; host: string; port: number } | { transport: "unix"; socketPath: string };

export interface ConsulEndpoint {
  address: ConsulAddress;
  https: boolean;
}

export interface ConsulTls {
  /** PEM of the CAs that sign the agent's certificate (CONSUL_CACERT / CONSUL_CAPATH); undefined: Node's list of public CAs. */
  ca?: string;
  /** Client certificate (PEM, intermediates after the leaf) and its key, for an agent with `verify_incoming`. */
  client?: { cert: string; key: Secret };
  /** The name the agent's certificate is checked against and sent as SNI (CONSUL_TLS_SERVER_NAME); default: the address's host. */
  serverName?: string;
  /** false only with CONSUL_HTTP_SSL_VERIFY=false: the agent's certificate is not checked. */
  verify: boolean;
}

export interface ConsulConnection {
  endpoint: ConsulEndpoint;
  /** ACL token sent as X-Consul-Token; none: the agent's default token. */
  token?: Secret;
  tls: ConsulTls;
}

/**
 * Parses a CONSUL_HTTP_ADDR value. Throws with the reason (the caller names the
 * setting). Credentials in the address are refused: they would be logged with
 * it, and Consul takes them from CONSUL_HTTP_AUTH, not from the address.
 */
export function parseConsulAddress(text: string, ssl: boolean): ConsulEndpoint {
  const trimmed = text.trim();
  // The address as errors repeat it: without what could be credentials ("//user:password@").
  const shown = JSON.stringify(trimmed.replace(/\/\/[^/]*@/, "//…@"));
  if (trimmed === "") throw new Error("empty address");
  if (trimmed.startsWith("unix://")) {
    const socketPath = trimmed.slice("unix://".length);
    if (!socketPath.startsWith("/")) throw new Error(`${shown}: a unix socket address is unix:///absolute/path`);
    return { address: { transport: "unix", socketPath }, https: ssl };
  }
  const withScheme = trimmed.includes("://") ? trimmed : `http://${trimmed}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`${shown} is not host:port, http(s)://host:port or unix:///path`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`unsupported scheme ${url.protocol} in ${shown} (use http, https or unix)`);
  }
  if (url.username !== "" || url.password !== "") throw new Error("the address must not carry credentials (give the ACL token in CONSUL_HTTP_TOKEN_FILE)");
  if ((url.pathname !== "/" && url.pathname !== "") || url.search !== "" || url.hash !== "") {
    throw new Error(`${shown} must not have a path or query`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return { address: { transport: "tcp", host, port: url.port === "" ? DEFAULT_PORT : Number(url.port) }, https: url.protocol === "https:" || ssl };
}

/**
 * The endpoint in words, for logs, errors and the doctor: "127.0.0.1:8500" (plain
 * http, as Consul's docs write an agent address), "https://127.0.0.1:8501",
 * "unix:///run/consul/agent.sock", "unix:///run/consul/agent.sock (https)".
 */
export function endpointText(endpoint: ConsulEndpoint): string {
  const { address } = endpoint;
  if (address.transport === "unix") return `unix://${address.socketPath}${endpoint.https ? " (https)" : ""}`;
  return `${endpoint.https ? "https://" : ""}${hostForUrl(address.host)}:${address.port}`;
}

/** What the `consul` client is constructed with: base URL, connection agent, and the socket for a unix address. */
export function clientTransport(connection: ConsulConnection): { baseUrl: string; agent: http.Agent; socketPath?: string } {
  const { endpoint, tls } = connection;
  const scheme = endpoint.https ? "https" : "http";
  const agent = endpoint.https
    ? new https.Agent({
        keepAlive: true,
        rejectUnauthorized: tls.verify,
        ...(tls.ca === undefined ? {} : { ca: tls.ca }),
        ...(tls.client === undefined ? {} : { cert: tls.client.cert, key: tls.client.key.reveal() }),
        ...(tls.serverName === undefined ? {} : { servername: tls.serverName }),
      })
    : new http.Agent({ keepAlive: true });
  const { address } = endpoint;
  if (address.transport === "unix") {
    // papi ignores the host and port of the base URL when given a socket path; Host: localhost, as curl --unix-socket sends.
    return { baseUrl: `${scheme}://localhost/v1`, agent, socketPath: address.socketPath };
  }
  return { baseUrl: `${scheme}://${hostForUrl(address.host)}:${address.port}/v1`, agent };
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
