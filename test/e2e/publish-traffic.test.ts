import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../support/eventually.js";
import { dockerOk, inNetns, lines, pluginPid, readLab } from "./support/lab.js";
import { createNetworkOn, removeContainers, removeNetworkOn } from "./support/overlay.js";
import { endpointId, publishedPorts, retry } from "./support/publish.js";

const lab = readLab();
const [h1, h2] = [lab.hosts[0]!, lab.hosts[1]!];
const NET = "pubt";
const out = (cmd: string) => inNetns(lab.outside.netns, ["sh", "-c", cmd], { timeoutMs: 120_000 });
const onHost = (cmd: string) => inNetns(h1.netns, ["sh", "-c", cmd], { timeoutMs: 120_000 });

// In hybrid mode (the lab's, and the default) a remote client's traffic is DNATed by the kernel and
// the host's own loopback traffic goes through the embedded proxy: both paths carry every test.
const PATHS = [
  { path: "kernel DNAT: outside → host address", sh: out, addr: h1.addr },
  { path: "embedded proxy: host → 127.0.0.1", sh: onHost, addr: "127.0.0.1" },
] as const;

describe("traffic through published ports", () => {
  const names = ["pt-web", "pt-wc", "pt-echo", "pt-exp", "pt-auto", "pt-pp"];

  beforeAll(async () => {
    await createNetworkOn([h1, h2], NET, "10.44.0.0/24");
    await createNetworkOn([h1, h2], "pubpp", "10.44.1.0/24", ["-o", "proxy-protocol=v1"]);
  });

  afterAll(async () => {
    await removeContainers(h1, names);
    await removeNetworkOn([h1, h2], NET);
    await removeNetworkOn([h1, h2], "pubpp");
  });

  let web: Promise<string> | undefined;
  /** pt-web: 100 MB of random data behind -p 18090:80; resolves to its sha256. */
  const startWeb = (): Promise<string> =>
    (web ??= (async () => {
      await dockerOk(h1, [
        "run",
        "-d",
        "--name",
        "pt-web",
        "--network",
        NET,
        "-p",
        "18090:80",
        lab.testImage,
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && dd if=/dev/urandom of=/tmp/www/data bs=1M count=100 2>/dev/null && sha256sum /tmp/www/data > /tmp/sum && exec httpd -f -p 80 -h /tmp/www",
      ]);
      return eventually(
        "pt-web to write its checksum",
        async () => {
          const r = await dockerOk(h1, ["exec", "pt-web", "sh", "-c", "cat /tmp/sum 2>/dev/null || true"]);
          return r === "" ? undefined : r.split(/\s+/)[0]!;
        },
        { timeoutMs: 60_000, everyMs: 200 },
      );
    })());

  it.each(PATHS)("moves 100 MB intact and completes 200 concurrent connections ($path)", async ({ sh, addr }) => {
    const want = await startWeb();
    const got = await sh(`curl -sS --max-time 60 http://${addr}:18090/data | sha256sum`);
    expect(got.stdout.split(/\s+/)[0]).toBe(want);
    const many = await sh(`seq 200 | xargs -P 200 -I{} curl -sS -o /dev/null --max-time 30 -w '%{http_code}\\n' http://${addr}:18090/ | sort | uniq -c`);
    expect(many.stdout.trim()).toMatch(/^200 200$/);
  });

  it("h1's accept worker (TSOVERLAY_PROXY_WORKERS=1) serves the proxied path while the plugin process is stopped", async () => {
    await startWeb();
    const plugin = await pluginPid(h1);
    expect(plugin).toBeDefined();
    const workers = await lines("pgrep", ["-P", String(plugin), "-f", "accept-worker.js"]);
    expect(workers).toHaveLength(1);
    process.kill(plugin!, "SIGSTOP");
    try {
      const r = await onHost(`for i in 1 2 3 4 5; do curl -sS --max-time 5 http://127.0.0.1:18090/; done`);
      expect(r.stdout.match(/^ok$/gm)).toHaveLength(5);
    } finally {
      process.kill(plugin!, "SIGCONT");
    }
  });

  it.each(PATHS)("passes a half-close through: the client ends its side and still gets the whole reply ($path)", async ({ sh, addr }) => {
    if ((await dockerOk(h1, ["ps", "-aq", "-f", "name=^pt-wc$"])) === "") {
      await dockerOk(h1, [
        "run",
        "-d",
        "--name",
        "pt-wc",
        "--network",
        NET,
        "-p",
        "18091:7000",
        lab.testImage,
        "socat",
        "TCP-LISTEN:7000,reuseaddr,fork",
        "SYSTEM:'wc -c'",
      ]);
    }
    const r = await retry(
      () => sh(`head -c 300000 /dev/zero | socat -t 10 - TCP:${addr}:18091`),
      (x) => x.stdout.trim() !== "",
    );
    expect(r.stdout.trim()).toBe("300000");
  });

  // The echo server answers each datagram to its sender (UDP-RECVFROM): socat's UDP-LISTEN,fork
  // can hand a second peer's first datagram to the first peer's child, which would blame the proxy.
  it.each(PATHS)("keeps two UDP clients of one published port apart ($path)", async ({ sh, addr }) => {
    if ((await dockerOk(h1, ["ps", "-aq", "-f", "name=^pt-echo$"])) === "") {
      await dockerOk(h1, [
        "run",
        "-d",
        "--name",
        "pt-echo",
        "--network",
        NET,
        "-p",
        "18092:5353/udp",
        lab.testImage,
        "socat",
        "-T1",
        "UDP-RECVFROM:5353,fork",
        "EXEC:cat",
      ]);
    }
    await retry(
      () => sh(`echo warm-up | socat -t 1 - UDP:${addr}:18092`),
      (x) => x.stdout.includes("warm-up"),
    );
    const [a, b] = await Promise.all([
      sh(`(echo from-a; sleep 1) | socat -t 2 - UDP:${addr}:18092`),
      sh(`(echo from-b; sleep 1) | socat -t 2 - UDP:${addr}:18092`),
    ]);
    expect(a.stdout.trim()).toBe("from-a");
    expect(b.stdout.trim()).toBe("from-b");
  });

  it("publishes exposed ports with -P, and --expose alone publishes nothing", async () => {
    await dockerOk(h1, ["run", "-d", "--name", "pt-exp", "--network", NET, "--expose", "80", lab.testImage, "httpd", "-f", "-p", "80", "-h", "/var/www"]);
    const exposedOnly = await endpointId(h1, "pt-exp", NET);
    expect((await publishedPorts(h1)).filter((p) => p.endpointId === exposedOnly)).toEqual([]);
    await dockerOk(h1, [
      "run",
      "-d",
      "--name",
      "pt-auto",
      "--network",
      NET,
      "--expose",
      "80",
      "-P",
      lab.testImage,
      "httpd",
      "-f",
      "-p",
      "80",
      "-h",
      "/var/www",
    ]);
    const id = await endpointId(h1, "pt-auto", NET);
    const port = (await publishedPorts(h1)).find((p) => p.endpointId === id && p.containerPort === 80);
    expect(port).toBeDefined();
    expect((await out(`curl -sS --max-time 5 http://${h1.addr}:${port!.hostPort}/`)).stdout).toContain("tsoverlay test image");
  });

  it("sends a PROXY protocol header with the client's address when the network asks for it", async () => {
    await dockerOk(h1, [
      "run",
      "-d",
      "--name",
      "pt-pp",
      "--network",
      "pubpp",
      "-p",
      "18093:7000",
      lab.testImage,
      "socat",
      "-u",
      "TCP-LISTEN:7000,reuseaddr,fork",
      "OPEN:/tmp/got,creat,append",
    ]);
    // Each attempt reads what the previous one's connection wrote, and sends again if that was nothing.
    const got = await retry(
      async () => {
        const g = await dockerOk(h1, ["exec", "pt-pp", "sh", "-c", "cat /tmp/got 2>/dev/null || true"]);
        if (!g.includes("payload")) await out(`echo payload | socat -t 2 - TCP:${h1.addr}:18093`);
        return g;
      },
      (g) => g.includes("payload"),
    );
    expect(got).toMatch(new RegExp(`^PROXY TCP4 ${lab.outside.addr.replace(/\./g, "\\.")} ${h1.addr.replace(/\./g, "\\.")} \\d+ 18093\\r\\npayload`));
  });
});
