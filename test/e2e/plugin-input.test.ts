import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { postPlugin } from "../support/plugin-client.js";
import { docker, readLab } from "./support/lab.js";

const lab = readLab();
const h1 = lab.hosts[0]!;

const ENDPOINTS = [
  "/NetworkDriver.CreateNetwork",
  "/NetworkDriver.DeleteNetwork",
  "/NetworkDriver.AllocateNetwork",
  "/NetworkDriver.FreeNetwork",
  "/NetworkDriver.CreateEndpoint",
  "/NetworkDriver.EndpointOperInfo",
  "/NetworkDriver.DeleteEndpoint",
  "/NetworkDriver.Join",
  "/NetworkDriver.Leave",
  "/NetworkDriver.DiscoverNew",
  "/NetworkDriver.DiscoverDelete",
  "/NetworkDriver.ProgramExternalConnectivity",
  "/NetworkDriver.RevokeExternalConnectivity",
  "/IpamDriver.RequestPool",
  "/IpamDriver.ReleasePool",
  "/IpamDriver.RequestAddress",
  "/IpamDriver.ReleaseAddress",
];

describe("the running plugin and bad input", () => {
  it("answers malformed and incomplete bodies on every endpoint with a clear Err, and keeps serving", async () => {
    const id = (await docker(h1, ["plugin", "inspect", "-f", "{{.Id}}", lab.pluginName])).stdout.trim();
    const sock = join(h1.pluginsDir, id, "tsoverlay.sock");
    for (const path of ENDPOINTS) {
      for (const body of ["{", "[]", "{}", '{"NetworkID": 7, "PoolID": false}']) {
        const r = await postPlugin(sock, path, body);
        expect(r.status, `${path} ${body}`).toBe(400);
        const err = (r.body as { Err?: string; Error?: string }).Err ?? "";
        expect(err, `${path} ${body}`).toMatch(new RegExp(path.split(".")[1]!));
        expect((r.body as { Error?: string }).Error).toBe(err);
      }
    }
    const alive = await postPlugin(sock, "/NetworkDriver.GetCapabilities");
    expect(alive.body).toEqual({ Scope: "local", ConnectivityScope: "global" });
    // Unknown endpoint ids are errors, not crashes — and never a 404, which Docker reads as "not implemented".
    const join1 = await postPlugin(sock, "/NetworkDriver.Join", { NetworkID: "n".repeat(64), EndpointID: "e".repeat(64), SandboxKey: "/x" });
    expect(join1.status).toBe(500);
    expect((join1.body as { Err: string }).Err).toMatch(/not found/);
  });
});
