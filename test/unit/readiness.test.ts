import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ok } from "../../plugin/http/answer.js";
import { ReadinessGate } from "../../plugin/readiness.js";
import { route } from "../../plugin/routes/route.js";
import type { DomainApi } from "../../driver/api.js";

const Body = z.object({ EndpointID: z.string() });
/** Enough of a domain for the gate: the route's call below reads nothing of it. */
const domain = {} as DomainApi;

function deleteEndpoint(gate: ReadinessGate, served: string[]) {
  return route(gate, "DeleteEndpoint", Body, (req) => {
    served.push(req.EndpointID);
    return ok({});
  });
}

describe("driver calls while the plugin starts", () => {
  it("a teardown that arrives before the domain is up waits for it and is served, not refused", async () => {
    const gate = new ReadinessGate({ startWaitMs: 5_000 });
    const served: string[] = [];
    const answer = deleteEndpoint(gate, served)({ EndpointID: "e1" });
    await Promise.resolve();
    expect(served).toEqual([]);
    gate.ready(domain);
    expect(await answer).toEqual({ ok: true, body: {} });
    expect(served).toEqual(["e1"]);
  });

  it("once the first start has failed, a call is answered at once with why (the start is retried behind it)", async () => {
    const gate = new ReadinessGate({ startWaitMs: 60_000 });
    gate.notReady("no underlay address: eth0 has none");
    const t0 = performance.now();
    const a = await deleteEndpoint(gate, [])({ EndpointID: "e1" });
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(a).toMatchObject({ ok: false, status: 503 });
    if (!a.ok) expect(a.error).toBe("DeleteEndpoint: tsoverlay is not ready: no underlay address: eth0 has none");
  });

  it("a start that outlasts the wait is answered 503 with the reason, and later calls are served once it is up", async () => {
    const gate = new ReadinessGate({ startWaitMs: 20 });
    const served: string[] = [];
    const a = await deleteEndpoint(gate, served)({ EndpointID: "e1" });
    expect(a).toMatchObject({ ok: false, status: 503 });
    if (!a.ok) expect(a.error).toBe("DeleteEndpoint: tsoverlay is not ready: starting");
    gate.ready(domain);
    expect((await deleteEndpoint(gate, served)({ EndpointID: "e2" })).ok).toBe(true);
    expect(served).toEqual(["e2"]);
  });

  it("a bad body is refused at once, without waiting for the start", async () => {
    const gate = new ReadinessGate({ startWaitMs: 60_000 });
    const a = await deleteEndpoint(gate, [])({ EndpointID: 5 });
    expect(a).toMatchObject({ ok: false, status: 400 });
  });
});
