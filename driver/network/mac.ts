/**
 * Docker's convention: a container MAC derived from its IPv4 address
 * (02:42:a.b.c.d). Addresses are unique cluster-wide, so the MACs are too,
 * and a reused address keeps its MAC, which keeps peers' tables consistent.
 */
export function macFromIpv4(ip: string): string {
  const octets = ip.split(".").map((o) => Number(o).toString(16).padStart(2, "0"));
  return ["02", "42", ...octets].join(":");
}

export function normalizeMac(mac: string): string | undefined {
  const m = mac.trim().toLowerCase();
  return /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(m) ? m : undefined;
}
