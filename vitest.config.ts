import { defineConfig } from "vitest/config";

// Three projects: `unit` is fast, needs no root and touches no kernel state;
// `kernel` runs the kernel adapters as root in throwaway namespaces; `e2e` drives the real lab (root, real dockerd/Consul/kernel) through a global
// setup that brings the lab up once and always tears it down.
export default defineConfig({
  test: {
    reporters: ["default"],
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          environment: "node",
        },
      },
      {
        // Kernel adapters against throwaway namespaces (root, no lab).
        test: {
          name: "kernel",
          include: ["test/kernel/**/*.test.ts"],
          environment: "node",
          testTimeout: 60_000,
          // One lab / one set of kernel objects: files must not run side by side.
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          globalSetup: ["test/e2e/global-setup.ts"],
          testTimeout: 180_000,
          hookTimeout: 600_000,
          pool: "forks",
          poolOptions: { forks: { singleFork: true } },
          sequence: { concurrent: false },
        },
      },
    ],
  },
});
