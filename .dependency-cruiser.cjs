/**
 * The layers, as the build keeps them (`npm run check:deps`, part of npm test):
 *
 *   plugin/            the HTTP edge: protocol types, validation, routing, readiness
 *   plugin/main.ts     the process entry
 *   plugin/compose/    the composition root: configuration, adapters wired to the domain
 *   driver/            the domain: networks, endpoints, IPAM, peers, names, publishing policy,
 *                      the error contract (errors.ts) and the interfaces its adapters implement
 *                      (contracts/)
 *   driver/kernel|store|dns|docker/   the adapters: netlink/iptables, Consul/embedded store,
 *                      the DNS listener, Docker's API
 *   proxy/             the embedded port proxy, a library
 *   lib/               small shared helpers (results, error words, logging, IP math, mutexes,
 *                      retries, HTTP over unix sockets, the C library through koffi)
 *   cli/               the `tsoverlay` command, a client of the plugin's socket
 *
 * Imports run edge → domain → (contracts implemented by) adapters; the composition may
 * import anything but the edge, and only the process entry imports it. Nothing imports
 * test code, no cycles anywhere, and every product file is reachable from a process
 * entry (none exists only for tests).
 */
const PRODUCT = "^(plugin|driver|proxy|lib|cli)/";
const ADAPTERS = "^driver/(kernel|store|dns|docker)/";
const EDGE = "^plugin/(?!compose/)";
const ENTRIES = "^plugin/main\\.ts$|^proxy/accept-worker\\.ts$|^cli/main\\.ts$";
module.exports = {
  forbidden: [
    { name: "no-circular", severity: "error", comment: "no import cycles", from: {}, to: { circular: true } },
    { name: "lib-imports-nothing-of-ours", severity: "error", from: { path: "^lib/" }, to: { path: "^(plugin|driver|proxy|cli|test)/" } },
    {
      name: "proxy-is-a-library",
      severity: "error",
      comment: "proxy/ depends on nothing but lib/",
      from: { path: "^proxy/" },
      to: { path: "^(plugin|driver|cli|test)/" },
    },
    {
      name: "domain-knows-no-edge-no-adapter",
      severity: "error",
      comment: "no Docker JSON, no kernel, no Consul in the domain: it talks to adapters through its contracts",
      from: { path: "^driver/", pathNot: ADAPTERS },
      to: { path: `^(plugin|cli|test)/|${ADAPTERS}` },
    },
    {
      name: "domain-uses-no-kernel-or-consul-package",
      severity: "error",
      comment: "lib/libc.ts is koffi: the kernel's, like the package",
      from: { path: "^driver/", pathNot: ADAPTERS },
      to: { path: "node_modules/(netlink|koffi|consul|express)/|^lib/libc\\.ts$" },
    },
    {
      name: "adapters-know-only-domain-contracts",
      severity: "error",
      comment: "an adapter implements a contract (driver/contracts, driver/errors.ts); it never calls the domain, the edge or the composition",
      from: { path: ADAPTERS },
      to: { path: "^(plugin|proxy|cli|test)/|^driver/(?!(contracts|kernel|store|dns|docker)/|errors\\.ts$)" },
    },
    {
      name: "cli-is-a-client",
      severity: "error",
      comment: "the CLI talks to the plugin over its socket; it borrows the domain's view types, never its code",
      from: { path: "^cli/" },
      to: { path: "^(plugin|proxy|test)/|^driver/", dependencyTypesNot: ["type-only"] },
    },
    { name: "edge-never-reaches-adapters", severity: "error", from: { path: EDGE }, to: { path: ADAPTERS } },
    {
      name: "only-the-process-entry-composes",
      severity: "error",
      from: { path: EDGE, pathNot: "^plugin/main\\.ts$" },
      to: { path: "^plugin/compose/" },
    },
    { name: "composition-is-not-edge", severity: "error", from: { path: "^plugin/compose/" }, to: { path: EDGE } },
    {
      name: "product-reachable-from-an-entry",
      severity: "error",
      comment: "a product file that no process entry reaches exists only for tests (or for nothing)",
      from: { path: ENTRIES },
      to: { path: PRODUCT, pathNot: `\\.d\\.ts$|${ENTRIES}`, reachable: false },
    },
    {
      name: "product-imports-no-test-code",
      severity: "error",
      comment: "fakes and helpers under test/ never ship",
      from: { path: PRODUCT },
      to: { path: "^test/" },
    },
    { name: "not-to-unresolvable", severity: "error", from: {}, to: { couldNotResolve: true } },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    // Tests may import anything; the rules are about product code.
    exclude: { path: "^(dist|node_modules)/|\\.test\\.ts$" },
    tsConfig: { fileName: "tsconfig.check.json" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
