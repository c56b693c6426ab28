/**
 * The layers, as the build keeps them (`npm run check:deps`, part of npm test):
 *
 *   plugin/    the HTTP edge: protocol types, validation, routing, the process entry
 *   app/       the composition root: configuration, adapters, assembly
 *   domain/    networks, endpoints, IPAM, peers, publishing policy; its ports (domain/ports)
 *   adapters/  kernel (netns, links, neighbors, iptables, egress, DNAT) and store (Consul, embedded)
 *   proxy/     the embedded port proxy, a library
 *   lib/       small shared helpers (results, logging, IP math, mutexes, retries)
 *   cli/       the `tsoverlay` command, a client of the plugin's socket
 *
 * Imports run edge → domain → (ports implemented by) adapters; app/ may import anything
 * but the edge, and only the process entry imports app/. Nothing imports test code,
 * no cycles anywhere, and every product file is reachable from a process entry
 * (none exists only for tests).
 */
const PRODUCT = "^(plugin|app|domain|adapters|proxy|lib|cli)/";
module.exports = {
  forbidden: [
    { name: "no-circular", severity: "error", comment: "no import cycles", from: {}, to: { circular: true } },
    { name: "lib-imports-nothing-of-ours", severity: "error", from: { path: "^lib/" }, to: { path: "^(plugin|app|domain|adapters|proxy|test)/" } },
    {
      name: "proxy-is-a-library",
      severity: "error",
      comment: "proxy/ depends on nothing but lib/",
      from: { path: "^proxy/" },
      to: { path: "^(plugin|app|domain|adapters|test)/" },
    },
    {
      name: "domain-knows-no-edge-no-adapter",
      severity: "error",
      comment: "no Docker JSON, no kernel, no Consul in the domain: it talks to adapters through its ports",
      from: { path: "^domain/" },
      to: { path: "^(plugin|app|adapters|test)/" },
    },
    {
      name: "domain-uses-no-kernel-or-consul-package",
      severity: "error",
      from: { path: "^domain/" },
      to: { path: "node_modules/(netlink|koffi|consul|express)/" },
    },
    {
      name: "adapters-know-only-domain-ports",
      severity: "error",
      comment: "an adapter implements a port (domain/ports, domain/errors); it never calls the domain, the edge or the composition",
      from: { path: "^adapters/" },
      to: { path: "^(plugin|app|proxy|test)/|^domain/(?!ports/|errors\\.ts$)" },
    },
    {
      name: "cli-is-a-client",
      severity: "error",
      comment: "the CLI talks to the plugin over its socket; it borrows the domain's view types, never its code",
      from: { path: "^cli/" },
      to: { path: "^(plugin|app|adapters|proxy|test)/|^domain/", dependencyTypesNot: ["type-only"] },
    },
    { name: "edge-never-reaches-adapters", severity: "error", from: { path: "^plugin/" }, to: { path: "^adapters/" } },
    {
      name: "only-the-process-entry-composes",
      severity: "error",
      from: { path: "^plugin/", pathNot: "^plugin/main\\.ts$" },
      to: { path: "^app/" },
    },
    { name: "composition-is-not-edge", severity: "error", from: { path: "^app/" }, to: { path: "^plugin/" } },
    {
      name: "product-reachable-from-an-entry",
      severity: "error",
      comment: "a product file that no process entry reaches exists only for tests (or for nothing)",
      from: { path: "^plugin/main\\.ts$|^proxy/accept-worker\\.ts$|^cli/main\\.ts$" },
      to: { path: PRODUCT, pathNot: "\\.d\\.ts$|^plugin/main\\.ts$|^proxy/accept-worker\\.ts$|^cli/main\\.ts$", reachable: false },
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
