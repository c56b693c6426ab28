import type { HostIpam } from "./ipam/host-ipam.js";
import type { OverlayDriver } from "./overlay-driver.js";
import type { PublishedPort } from "./publish/port-publisher.js";
import type { ClusterSnapshot } from "./cluster/cluster-view.js";
import type { PeerReport } from "./peers/peer-sync.js";

/** One finding of `tsoverlay doctor` ("problem": breaks networks now; "warn": will, or is known to misbehave). */
export interface Finding {
  check: string;
  status: "ok" | "info" | "warn" | "problem";
  detail: string;
  /** One line: what to do. */
  fix?: string;
}

/** `tsoverlay probe`: what one peer's VTEP answered. */
export interface ProbeReport {
  peer: string;
  network: string;
  subnet: string;
  vni: number;
  verdict: "ok" | "mtu-too-small" | "udp-blocked" | "peer-not-answering";
  /** One line, in words. */
  summary: string;
  rttMs: { min: number; avg: number; max: number } | null;
  /** The largest outer packet that got an answer. */
  pathMtu: number | null;
  /** The network's MTU + the VXLAN overhead. */
  neededMtu: number;
  /** Every probe sent: its kind, outer size and outcome. */
  samples: ({ probe: "vxlan" | "ping"; size: number; kind: string } & Record<string, unknown>)[];
}

/** One part of a support bundle: collected, or why not. */
export type SupportPart<T> = { ok: true; value: T } | { ok: false; error: string };

/** What the plugin collects for `tsoverlay support-bundle` besides its other views (GET /tsoverlay/support). */
export interface SupportParts {
  /** File name (a network's name, a namespace's, or "host") → that namespace's kernel tables as text. */
  kernel: SupportPart<Record<string, string>>;
  /** The cluster store's records under tsoverlay/, secret-named fields redacted. */
  store: SupportPart<{ key: string; modifyIndex: number; value: unknown }[]>;
}

/** What a running host offers the HTTP edge: the routes call these once the domain is up. */
export interface DomainApi {
  driver: OverlayDriver;
  ipam: HostIpam;
  /** Published ports with their counters (docker ps cannot show a remote driver's ports). */
  ports(): PublishedPort[];
  /** What the status endpoint shows about the cluster side. */
  cluster(): Promise<Record<string, unknown>>;
  /** Every host, network and endpoint of the cluster, read from the store (GET /tsoverlay/cluster). */
  view(): Promise<ClusterSnapshot>;
  /** Every live host's peer tables against what it should program (GET /tsoverlay/peers). */
  peers(): Promise<PeerReport>;
  /** This host checked for what has bitten users (GET /tsoverlay/doctor). */
  doctor(): Promise<Finding[]>;
  /** VXLAN probes to a peer's VTEP (GET /tsoverlay/probe?target=…&network=…). */
  probe(target: string, network: string | undefined): Promise<ProbeReport>;
  /** Replaces this host's WireGuard key and publishes the new public key (POST /tsoverlay/rotate-key). */
  rotateKey(): Promise<{ publicKey: string }>;
  /** This host's kernel tables and the store's records, for a support bundle (GET /tsoverlay/support). */
  support(): Promise<SupportParts>;
}
