import { failure, success, type Result } from "../lib/result.js";
import { validateBinding, type Binding } from "./binding.js";

/** A published port range as Docker's PortBinding carries it (`HostPort..HostPortEnd`). */
export interface PortRangeSpec extends Binding {
  /** Inclusive; absent or equal to hostPort for a single port. */
  hostPortEnd?: number;
  /** Inclusive; absent or equal to backendPort for a single port. */
  backendPortEnd?: number;
}

/**
 * - "each": publish every binding (container range mapped onto an equally long host range, or
 *   onto ephemeral host ports when hostPort is 0);
 * - "any": publish exactly one, the first candidate whose host port can be bound (a single
 *   container port with a host range: the range is where the daemon allocates it).
 */
export type PortRangePlan = { kind: "each"; bindings: Binding[] } | { kind: "any"; candidates: Binding[] };

const range = (start: number, end: number | undefined): string => (end === undefined || end === start ? String(start) : `${start}-${end}`);

/**
 * Docker's rules (go-connections nat.ParsePortSpec): container range C and host range H
 * - |H| = |C|: container port i ↔ host port i, consecutively (`-p 8000-8002:80-82`);
 * - |C| = 1, |H| > 1: one host port out of H (`-p 8000-8010:80`);
 * - no host port (0): every container port gets its own ephemeral host port;
 * - anything else: "invalid ranges specified for container and host Ports: 80-82 and 8000-8001".
 */
export function expandPortRange(spec: PortRangeSpec): Result<PortRangePlan> {
  const { hostPortEnd, backendPortEnd, ...base } = spec;
  const hEnd = hostPortEnd ?? spec.hostPort;
  const cEnd = backendPortEnd ?? spec.backendPort;
  const hostText = range(spec.hostPort, hostPortEnd);
  const containerText = range(spec.backendPort, backendPortEnd);
  if (!Number.isInteger(cEnd) || cEnd < spec.backendPort || cEnd > 65535) return failure(`invalid containerPort: ${containerText}`);
  if (!Number.isInteger(hEnd) || hEnd < spec.hostPort || hEnd > 65535 || (spec.hostPort === 0 && hEnd !== 0)) {
    return failure(`invalid hostPort: ${hostText}`);
  }
  const first = validateBinding(base);
  if (!first.ok) return first;

  const count = cEnd - spec.backendPort + 1;
  const hostCount = hEnd - spec.hostPort + 1;
  const at = (hostPort: number, backendPort: number): Binding => ({ ...base, hostPort, backendPort });

  if (spec.hostPort === 0) {
    return success({ kind: "each", bindings: Array.from({ length: count }, (_, i) => at(0, spec.backendPort + i)) });
  }
  if (hostCount === count) {
    return success({ kind: "each", bindings: Array.from({ length: count }, (_, i) => at(spec.hostPort + i, spec.backendPort + i)) });
  }
  if (count === 1) {
    return success({ kind: "any", candidates: Array.from({ length: hostCount }, (_, i) => at(spec.hostPort + i, spec.backendPort)) });
  }
  return failure(`invalid ranges specified for container and host Ports: ${containerText} and ${hostText}`);
}
