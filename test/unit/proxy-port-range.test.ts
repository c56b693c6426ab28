import { describe, expect, it } from "vitest";
import { expandPortRange, type PortRangeSpec } from "../../proxy/port-range.js";

const spec = (s: Partial<PortRangeSpec>): PortRangeSpec => ({
  proto: "tcp",
  hostIp: "",
  hostPort: 8000,
  backendIp: "10.10.0.5",
  backendPort: 80,
  ...s,
});

const pairs = (r: ReturnType<typeof expandPortRange>) => {
  if (!r.ok) throw new Error(r.error);
  const list = r.value.kind === "each" ? r.value.bindings : r.value.candidates;
  return { kind: r.value.kind, pairs: list.map((b) => [b.hostPort, b.backendPort]) };
};

describe("expandPortRange (Docker's -p rules)", () => {
  it("single port → one binding", () => {
    expect(pairs(expandPortRange(spec({})))).toEqual({ kind: "each", pairs: [[8000, 80]] });
  });

  it("equal ranges map consecutively: -p 8000-8002:80-82", () => {
    expect(pairs(expandPortRange(spec({ hostPortEnd: 8002, backendPortEnd: 82 })))).toEqual({
      kind: "each",
      pairs: [
        [8000, 80],
        [8001, 81],
        [8002, 82],
      ],
    });
  });

  it("a host range for one container port is an allocation range: -p 8000-8002:80", () => {
    expect(pairs(expandPortRange(spec({ hostPortEnd: 8002 })))).toEqual({
      kind: "any",
      pairs: [
        [8000, 80],
        [8001, 80],
        [8002, 80],
      ],
    });
  });

  it("no host port: every container port gets an ephemeral host port: -p 80-81", () => {
    expect(pairs(expandPortRange(spec({ hostPort: 0, backendPortEnd: 81 })))).toEqual({
      kind: "each",
      pairs: [
        [0, 80],
        [0, 81],
      ],
    });
  });

  it("keeps the other fields on every binding", () => {
    const r = expandPortRange(spec({ proto: "udp", hostIp: "::1", hostPortEnd: 8001, backendPortEnd: 81 }));
    if (!r.ok || r.value.kind !== "each") throw new Error("unexpected");
    expect(r.value.bindings[1]).toEqual({ proto: "udp", hostIp: "::1", hostPort: 8001, backendIp: "10.10.0.5", backendPort: 81 });
  });

  it("rejects mismatched and inverted ranges with Docker's wording", () => {
    expect(expandPortRange(spec({ hostPortEnd: 8001, backendPortEnd: 82 }))).toEqual({
      ok: false,
      error: "invalid ranges specified for container and host Ports: 80-82 and 8000-8001",
    });
    expect(expandPortRange(spec({ backendPortEnd: 81 }))).toEqual({
      ok: false,
      error: "invalid ranges specified for container and host Ports: 80-81 and 8000",
    });
    expect(expandPortRange(spec({ hostPortEnd: 7999 }))).toEqual({ ok: false, error: "invalid hostPort: 8000-7999" });
    expect(expandPortRange(spec({ backendPortEnd: 79 }))).toEqual({ ok: false, error: "invalid containerPort: 80-79" });
    expect(expandPortRange(spec({ hostPort: 0, hostPortEnd: 10 })).ok).toBe(false);
    expect(expandPortRange(spec({ backendIp: "not-an-ip" })).ok).toBe(false);
  });
});
