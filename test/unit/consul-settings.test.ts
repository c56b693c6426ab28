/**
 * Consul's settings as the plugin's configuration reads them (plugin/compose/
 * consul-settings.ts through loadConfig): the meanings and precedence of the
 * consul CLI, and a start that stops with the setting and the file named.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { config, refusal } from "../support/plugin-config.js";
import { endpointText } from "../../driver/store/consul-connection.js";
import { CONSUL_SETTINGS } from "../../plugin/compose/consul-settings.js";
import { makeTestPki, type TestPki } from "../support/test-pki.js";

const ADDR = { CONSUL_HTTP_ADDR: "127.0.0.1:8501" };
const HTTPS = { CONSUL_HTTP_ADDR: "https://127.0.0.1:8501" };

describe("CONSUL_HTTP_ADDR and CONSUL_HTTP_SSL", () => {
  it("no address: the embedded store; Consul settings without one are named in a warning", () => {
    expect(config({}).consul).toBeUndefined();
    expect(config({}).warnings).toEqual([]);
    const c = config({ CONSUL_HTTP_TOKEN: "t", CONSUL_HTTP_SSL: "true" });
    expect(c.consul).toBeUndefined();
    expect(c.warnings).toEqual(["CONSUL_HTTP_TOKEN, CONSUL_HTTP_SSL set but CONSUL_HTTP_ADDR is empty: the embedded single-host store is used, not Consul"]);
  });

  it.each([
    [{ CONSUL_HTTP_ADDR: "127.0.0.1:8500" }, "127.0.0.1:8500", { transport: "tcp", host: "127.0.0.1", port: 8500 }, false],
    [{ CONSUL_HTTP_ADDR: "consul.internal" }, "consul.internal:8500", { transport: "tcp", host: "consul.internal", port: 8500 }, false],
    [{ CONSUL_HTTP_ADDR: "http://10.0.0.5:18500" }, "10.0.0.5:18500", { transport: "tcp", host: "10.0.0.5", port: 18500 }, false],
    [{ CONSUL_HTTP_ADDR: "https://consul.example" }, "https://consul.example:8500", { transport: "tcp", host: "consul.example", port: 8500 }, true],
    [
      { CONSUL_HTTP_ADDR: "consul.example:8501", CONSUL_HTTP_SSL: "true" },
      "https://consul.example:8501",
      { transport: "tcp", host: "consul.example", port: 8501 },
      true,
    ],
    // Consul's client: an explicit http:// does not turn TLS off again.
    [{ CONSUL_HTTP_ADDR: "http://127.0.0.1:8501", CONSUL_HTTP_SSL: "1" }, "https://127.0.0.1:8501", { transport: "tcp", host: "127.0.0.1", port: 8501 }, true],
    [
      { CONSUL_HTTP_ADDR: "https://127.0.0.1:8501", CONSUL_HTTP_SSL: "false" },
      "https://127.0.0.1:8501",
      { transport: "tcp", host: "127.0.0.1", port: 8501 },
      true,
    ],
    [{ CONSUL_HTTP_ADDR: "[::1]:8500" }, "[::1]:8500", { transport: "tcp", host: "::1", port: 8500 }, false],
    [
      { CONSUL_HTTP_ADDR: "unix:///run/consul/agent.sock" },
      "unix:///run/consul/agent.sock",
      { transport: "unix", socketPath: "/run/consul/agent.sock" },
      false,
    ],
    [
      { CONSUL_HTTP_ADDR: "unix:///run/consul/agent.sock", CONSUL_HTTP_SSL: "T" },
      "unix:///run/consul/agent.sock (https)",
      { transport: "unix", socketPath: "/run/consul/agent.sock" },
      true,
    ],
  ])("%j → %s", (env, text, address, https) => {
    const consul = config(env).consul!;
    expect(consul.endpoint).toEqual({ address, https });
    expect(endpointText(consul.endpoint)).toBe(text);
  });

  it.each([
    [
      { CONSUL_HTTP_ADDR: "unix://run/consul.sock" },
      /^invalid environment: CONSUL_HTTP_ADDR: "unix:\/\/run\/consul.sock": a unix socket address is unix:\/\/\/absolute\/path$/,
    ],
    [{ CONSUL_HTTP_ADDR: "http://host:8500/sub/path" }, /^invalid environment: CONSUL_HTTP_ADDR: .* must not have a path or query$/],
    [{ CONSUL_HTTP_ADDR: "ftp://host:8500" }, /^invalid environment: CONSUL_HTTP_ADDR: unsupported scheme ftp: /],
    [{ CONSUL_HTTP_ADDR: "http://user:pw@host:8500" }, /^invalid environment: CONSUL_HTTP_ADDR: the address must not carry credentials/],
    [{ CONSUL_HTTP_ADDR: "http://[nope:8500" }, /^invalid environment: CONSUL_HTTP_ADDR: .* is not host:port/],
    [{ ...ADDR, CONSUL_HTTP_SSL: "yes" }, /^invalid environment: CONSUL_HTTP_SSL: /],
    [{ ...ADDR, CONSUL_HTTP_SSL_VERIFY: "no" }, /^invalid environment: CONSUL_HTTP_SSL_VERIFY: /],
  ])("refuses %j", (env, expected) => {
    expect(refusal(env)).toMatch(expected);
  });

  it.each(["http://user:s3cr3t-pw@host:8500", "http://user:s3cr3t-pw@[bad:8500", "ftp://user:s3cr3t-pw@host", "http://user:s3cr3t-pw@host:8500/path"])(
    "the credentials of a refused address are not repeated: %s",
    (addr) => {
      const error = refusal({ CONSUL_HTTP_ADDR: addr });
      expect(error).toMatch(/^invalid environment: CONSUL_HTTP_ADDR: /);
      expect(error).not.toContain("s3cr3t-pw");
    },
  );
});

describe("files: token, CA, client certificate", () => {
  let pki: TestPki;
  let dir: string;
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  beforeAll(() => {
    pki = makeTestPki();
    dir = mkdtempSync(join(tmpdir(), "tso-settings-"));
  });
  afterAll(() => {
    pki.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  describe("CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE", () => {
    it("the variable alone; the file alone, trimmed; none", () => {
      expect(config({ ...ADDR, CONSUL_HTTP_TOKEN: "from-env" }).consul!.token!.reveal()).toBe("from-env");
      expect(config({ ...ADDR, CONSUL_HTTP_TOKEN_FILE: file("token", "  from-file\n") }).consul!.token!.reveal()).toBe("from-file");
      expect(config(ADDR).consul!.token).toBeUndefined();
    });

    it("both: the file wins, as in Consul's client, with a warning to clear the variable", () => {
      const c = config({ ...ADDR, CONSUL_HTTP_TOKEN: "from-env", CONSUL_HTTP_TOKEN_FILE: file("token", "from-file\n") });
      expect(c.consul!.token!.reveal()).toBe("from-file");
      expect(c.warnings).toEqual([expect.stringMatching(/^CONSUL_HTTP_TOKEN is not used: CONSUL_HTTP_TOKEN_FILE holds a token and wins/)]);
    });

    it("an empty file leaves the variable in force (Consul's client does the same), with a warning", () => {
      const empty = file("empty-token", "\n");
      const c = config({ ...ADDR, CONSUL_HTTP_TOKEN: "from-env", CONSUL_HTTP_TOKEN_FILE: empty });
      expect(c.consul!.token!.reveal()).toBe("from-env");
      expect(c.warnings).toEqual([`CONSUL_HTTP_TOKEN_FILE: ${empty} is empty: CONSUL_HTTP_TOKEN is used`]);
      const none = config({ ...ADDR, CONSUL_HTTP_TOKEN_FILE: empty });
      expect(none.consul!.token).toBeUndefined();
      expect(none.warnings[0]).toMatch(/is empty: requests carry no ACL token/);
    });

    it("a file that cannot be read stops the start, naming the setting and the path", () => {
      expect(refusal({ ...ADDR, CONSUL_HTTP_TOKEN_FILE: join(dir, "missing") })).toBe(
        `invalid environment: CONSUL_HTTP_TOKEN_FILE: cannot read ${join(dir, "missing")} (ENOENT)`,
      );
      expect(refusal({ ...ADDR, CONSUL_HTTP_TOKEN_FILE: dir })).toBe(`invalid environment: CONSUL_HTTP_TOKEN_FILE: cannot read ${dir} (EISDIR)`);
    });

    it("a file that holds more than a token is refused without repeating what it holds", () => {
      const error = refusal({ ...ADDR, CONSUL_HTTP_TOKEN_FILE: file("two-lines", "first-secret-line\nsecond-secret-line\n") });
      expect(error).toMatch(/^invalid environment: CONSUL_HTTP_TOKEN_FILE \(.*two-lines\): the token has spaces, line breaks/);
      expect(error).not.toMatch(/secret-line/);
    });
  });

  describe("CONSUL_CACERT and CONSUL_CAPATH", () => {
    it("CONSUL_CACERT: its certificates are what the agent's certificate is checked against", () => {
      const c = config({ ...HTTPS, CONSUL_CACERT: pki.ca.certFile });
      expect(c.consul!.tls).toEqual({ verify: true, ca: pki.ca.cert.trim() });
      expect(c.warnings).toEqual([]);
    });

    it("CONSUL_CAPATH: every certificate in the folder and below it, links followed", () => {
      const caDir = join(dir, "cas");
      mkdirSync(join(caDir, "sub"), { recursive: true });
      writeFileSync(join(caDir, "a.pem"), pki.ca.cert);
      symlinkSync(pki.otherCa.certFile, join(caDir, "sub", "b.pem"));
      const c = config({ ...HTTPS, CONSUL_CAPATH: caDir });
      expect(c.consul!.tls.ca).toBe(`${pki.ca.cert.trim()}\n${pki.otherCa.cert.trim()}`);
    });

    it("both: CONSUL_CACERT wins, as in Consul's client, with a warning", () => {
      const c = config({ ...HTTPS, CONSUL_CACERT: pki.ca.certFile, CONSUL_CAPATH: dir });
      expect(c.consul!.tls.ca).toBe(pki.ca.cert.trim());
      expect(c.warnings).toEqual(["CONSUL_CAPATH is not used: CONSUL_CACERT is set and wins, as in Consul's client"]);
    });

    it.each([
      ["CONSUL_CACERT", () => join(dir, "no-such-ca.pem"), /^invalid environment: CONSUL_CACERT: cannot read .*no-such-ca\.pem \(ENOENT\)$/],
      ["CONSUL_CACERT", () => file("not-pem.txt", "hello"), /^invalid environment: CONSUL_CACERT: .*not-pem\.txt holds no PEM certificate/],
      [
        "CONSUL_CACERT",
        () => file("broken.pem", `${pki.ca.cert}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`),
        /^invalid environment: CONSUL_CACERT: certificate 2 in .*broken\.pem does not parse/,
      ],
      ["CONSUL_CAPATH", () => join(dir, "no-such-dir"), /^invalid environment: CONSUL_CAPATH: cannot read .*no-such-dir \(ENOENT\)$/],
      ["CONSUL_CAPATH", () => pki.ca.certFile, /^invalid environment: CONSUL_CAPATH: .*ca\.pem is not a folder \(a single CA file goes in CONSUL_CACERT\)$/],
      [
        "CONSUL_CAPATH",
        () => {
          const d = join(dir, "cas-with-junk");
          mkdirSync(d, { recursive: true });
          writeFileSync(join(d, "a.pem"), pki.ca.cert);
          writeFileSync(join(d, "README"), "not a certificate");
          return d;
        },
        /^invalid environment: CONSUL_CAPATH: .*cas-with-junk\/README holds no PEM certificate/,
      ],
      [
        "CONSUL_CAPATH",
        () => {
          const d = join(dir, "empty-cas");
          mkdirSync(d, { recursive: true });
          return d;
        },
        /^invalid environment: CONSUL_CAPATH: .*empty-cas holds no certificate files$/,
      ],
    ])("%s: a bad file stops the start, naming the setting and the file (%#)", (setting, path, expected) => {
      expect(refusal({ ...HTTPS, [setting]: path() })).toMatch(expected);
    });

    it("an unreadable CA file names CONSUL_CACERT and the path", () => {
      if (process.getuid?.() === 0) {
        // root reads any file: a folder stands in for an unreadable file.
        expect(refusal({ ...HTTPS, CONSUL_CACERT: dir })).toBe(`invalid environment: CONSUL_CACERT: cannot read ${dir} (EISDIR)`);
        return;
      }
      const locked = file("locked.pem", pki.ca.cert);
      chmodSync(locked, 0o000);
      expect(refusal({ ...HTTPS, CONSUL_CACERT: locked })).toBe(`invalid environment: CONSUL_CACERT: cannot read ${locked} (EACCES)`);
    });
  });

  describe("CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY", () => {
    it("a matching pair is the client certificate; the key is kept as a secret", () => {
      const c = config({ ...HTTPS, CONSUL_CLIENT_CERT: pki.client.certFile, CONSUL_CLIENT_KEY: pki.client.keyFile });
      expect(c.consul!.tls.client!.cert).toBe(pki.client.cert.trim());
      expect(c.consul!.tls.client!.key.reveal()).toBe(pki.client.key);
      expect(JSON.stringify(c)).not.toContain("PRIVATE KEY");
    });

    it.each([
      [{ CONSUL_CLIENT_CERT: "/x/cert.pem" }, /^invalid environment: CONSUL_CLIENT_CERT is set without CONSUL_CLIENT_KEY: a client certificate needs both$/],
      [{ CONSUL_CLIENT_KEY: "/x/key.pem" }, /^invalid environment: CONSUL_CLIENT_KEY is set without CONSUL_CLIENT_CERT: a client certificate needs both$/],
    ])("one without the other is refused: %j", (env, expected) => {
      expect(refusal({ ...HTTPS, ...env })).toMatch(expected);
    });

    it("a key that is not the certificate's, or not a key, names the setting and the files", () => {
      expect(refusal({ ...HTTPS, CONSUL_CLIENT_CERT: pki.client.certFile, CONSUL_CLIENT_KEY: pki.otherClient.keyFile })).toBe(
        `invalid environment: CONSUL_CLIENT_KEY: the key in ${pki.otherClient.keyFile} does not belong to the certificate in ${pki.client.certFile} (CONSUL_CLIENT_CERT)`,
      );
      expect(refusal({ ...HTTPS, CONSUL_CLIENT_CERT: pki.client.certFile, CONSUL_CLIENT_KEY: pki.client.certFile })).toMatch(
        new RegExp(`^invalid environment: CONSUL_CLIENT_KEY: ${pki.client.certFile} is not an unencrypted PEM private key \\(`),
      );
      expect(refusal({ ...HTTPS, CONSUL_CLIENT_CERT: join(dir, "nope.pem"), CONSUL_CLIENT_KEY: pki.client.keyFile })).toMatch(
        /^invalid environment: CONSUL_CLIENT_CERT: cannot read .*nope\.pem \(ENOENT\)$/,
      );
    });
  });

  describe("CONSUL_TLS_SERVER_NAME and CONSUL_HTTP_SSL_VERIFY", () => {
    it.each([
      ["server.dc1.consul", "server.dc1.consul"],
      ["server.dc1.consul:8501", "server.dc1.consul"],
      ["[::1]:8501", "::1"],
    ])("the server name %s → %s (a port is dropped, as Consul's client does)", (given, name) => {
      expect(config({ ...HTTPS, CONSUL_TLS_SERVER_NAME: given }).consul!.tls.serverName).toBe(name);
    });

    it("CONSUL_HTTP_SSL_VERIFY=false turns verification off, with a warning; verification is on by default", () => {
      expect(config(HTTPS).consul!.tls.verify).toBe(true);
      const c = config({ ...HTTPS, CONSUL_HTTP_SSL_VERIFY: "false" });
      expect(c.consul!.tls.verify).toBe(false);
      expect(c.warnings).toEqual([expect.stringMatching(/^CONSUL_HTTP_SSL_VERIFY=false: the Consul agent's certificate is not verified/)]);
    });

    it("TLS settings with a plain http address are named in a warning", () => {
      const c = config({ ...ADDR, CONSUL_CACERT: pki.ca.certFile, CONSUL_TLS_SERVER_NAME: "server.dc1.consul" });
      expect(c.consul!.endpoint.https).toBe(false);
      expect(c.warnings).toEqual([
        "CONSUL_CACERT, CONSUL_TLS_SERVER_NAME set but Consul is reached over plain http: they are not used (give an https:// address or set CONSUL_HTTP_SSL=true)",
      ]);
    });
  });
});

describe("declared and documented", () => {
  const manifest = JSON.parse(readFileSync(new URL("../../config.json", import.meta.url), "utf8")) as {
    env: { name: string; description: string; settable?: string[] }[];
    mounts: { name: string; source: string; destination: string; options: string[]; settable?: string[] }[];
  };
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

  it.each([...CONSUL_SETTINGS])("%s is a settable env entry of config.json and in the README's settings table", (name) => {
    const entry = manifest.env.find((e) => e.name === name);
    expect(entry?.settable).toEqual(["value"]);
    expect(entry?.description.length).toBeGreaterThan(20);
    expect(readme).toMatch(new RegExp(`^\\|[^\\n]*\`${name}\`[^\\n]*\\|`, "m"));
  });

  it("the consul-tls mount: read-only, its source settable, at the folder the README's paths use", () => {
    const mount = manifest.mounts.find((m) => m.name === "consul-tls");
    expect(mount).toMatchObject({ destination: "/etc/tsoverlay/consul", settable: ["source"] });
    expect(mount!.options).toContain("ro");
    // Not recursive: a default of /var/run must not hold the host's network namespace mounts.
    expect(mount!.options).not.toContain("rbind");
    expect(readme).toMatch(/^\| `consul-tls\.source` \|/m);
  });
});
