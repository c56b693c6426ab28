import net from "node:net";
import { failure, success, type Result } from "../lib/result.js";

export type Proto = "tcp" | "udp";
export type ProxyProtocolVersion = "v1" | "v2";

/** One published port: where the proxy listens and where it forwards to. */
export interface Binding {
  proto: Proto;
  /**
   * "" = every address of both families (Docker's default `-p 8080:80`: 0.0.0.0 and [::]);
   * "0.0.0.0" = every IPv4 address only; "::" = every IPv6 address only (IPV6_V6ONLY, as Docker
   * binds it); anything else is one literal address ("127.0.0.1", "::1", …).
   */
  hostIp: string;
  /** 0 = let the kernel pick; the chosen port is reported on the ActiveBinding. */
  hostPort: number;
  backendIp: string;
  backendPort: number;
  /** Send a PROXY protocol header (client address and port) to the backend first. TCP only. */
  proxyProtocol?: ProxyProtocolVersion;
  /**
   * For hostIp "": bind the [::] half this long after the IPv4 half, and only if it is free
   * then; otherwise IPv6 is left to whoever holds it. (A container's other network can be its
   * IPv6 gateway and publish [::] itself, and Docker may tell this binding's owner too late.)
   */
  deferIpv6Ms?: number;
}

/** "1.2.3.4:80", "[::1]:80"; "" (all addresses) is shown as "*:80". */
export function formatAddress(ip: string, port: number): string {
  if (ip === "") return `*:${port}`;
  return net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** "tcp 0.0.0.0:8080 → 10.10.0.5:80": how every message names a binding. */
export function describeBinding(b: Binding, hostPort: number = b.hostPort): string {
  const pp = b.proxyProtocol ? ` (PROXY ${b.proxyProtocol})` : "";
  return `${b.proto} ${formatAddress(b.hostIp, hostPort)} → ${formatAddress(b.backendIp, b.backendPort)}${pp}`;
}

const isPort = (p: unknown, min: number): p is number => typeof p === "number" && Number.isInteger(p) && p >= min && p <= 65535;

/** Checks a binding supplied by a caller; the error text names the binding. */
export function validateBinding(b: Binding): Result<Binding> {
  const why = problem(b);
  return why === undefined ? success(b) : failure(`invalid port binding ${describeBinding(b)}: ${why}`);
}

function problem(b: Binding): string | undefined {
  if (b.proto !== "tcp" && b.proto !== "udp") return `unsupported protocol "${String(b.proto)}"`;
  if (b.hostIp !== "" && net.isIP(b.hostIp) === 0) return `host IP "${b.hostIp}" is not an IP address`;
  if (!isPort(b.hostPort, 0)) return `host port ${String(b.hostPort)} is out of range 0-65535`;
  if (net.isIP(b.backendIp) === 0) return `backend IP "${b.backendIp}" is not an IP address`;
  if (!isPort(b.backendPort, 1)) return `backend port ${String(b.backendPort)} is out of range 1-65535`;
  if (b.proxyProtocol !== undefined) {
    if (b.proxyProtocol !== "v1" && b.proxyProtocol !== "v2") return `unknown PROXY protocol "${String(b.proxyProtocol)}"`;
    if (b.proto !== "tcp") return "the PROXY protocol is only supported for tcp";
  }
  return undefined;
}
