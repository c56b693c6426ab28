#!/usr/bin/env bash
# `npm run bench -- NAME`: runs a benchmark and writes test/bench/results/NAME.json,
# and its chart beside it (NAME.png). `npm run bench -- charts [FILE.json...]`
# draws the charts again from results files (all of test/bench/results by default);
# `npm run bench -- readme` rewrites README.md's benchmark tables from them.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:-}
charts() { npx vite-node test/bench/charts-cli.ts -- "$@"; }
case $name in
  overlay) shift; [ "$(id -u)" = 0 ] || { echo "the overlay benchmark drives the lab: run it as root" >&2; exit 1; }
           npm run --silent build && npx vite-node test/bench/overlay.ts -- "$@" && charts test/bench/results/overlay.json ;;
  churn) shift; [ "$(id -u)" = 0 ] || { echo "the churn benchmark drives the lab: run it as root" >&2; exit 1; }
         npm run --silent build && npx vite-node test/bench/churn.ts -- "$@" && charts "${BENCH_OUT:-test/bench/results/churn.json}" ;;
  convergence) shift; [ "$(id -u)" = 0 ] || { echo "the convergence benchmark drives the lab: run it as root" >&2; exit 1; }
               npm run --silent build && npx vite-node test/bench/convergence.ts -- "$@" && charts "${BENCH_OUT:-test/bench/results/convergence.json}" ;;
  startup) shift; [ "$(id -u)" = 0 ] || { echo "the startup benchmark drives the lab: run it as root" >&2; exit 1; }
           npm run --silent build && npx vite-node test/bench/startup.ts -- "$@" && charts "${BENCH_OUT:-test/bench/results/startup.json}" ;;
  scale) shift; [ "$(id -u)" = 0 ] || { echo "the scale benchmark drives the lab: run it as root" >&2; exit 1; }
         npm run --silent build && npx vite-node test/bench/scale.ts -- "$@" && charts "${BENCH_OUT:-test/bench/results/scale.json}" ;;
  proxy) shift; [ "$(id -u)" = 0 ] || { echo "the proxy benchmark creates a network namespace: run it as root" >&2; exit 1; }
         out=test/bench/results/proxy.json; [ "${BENCH_PROXY_WORKERS:-0}" = 0 ] || out=test/bench/results/proxy-workers-$BENCH_PROXY_WORKERS.json
         npx vite-node test/bench/proxy.ts -- "$@" && charts "$out" ;;
  wireguard) shift; [ "$(id -u)" = 0 ] || { echo "the wireguard benchmark creates network namespaces: run it as root" >&2; exit 1; }
             npx vite-node test/bench/wireguard.ts -- "$@" && charts test/bench/results/wireguard.json ;;
  charts) shift; charts "$@" ;;
  readme) npx vite-node test/bench/readme-cli.ts ;;
  *) echo "usage: npm run bench -- overlay|convergence|startup|scale|proxy|churn|wireguard|charts|readme" >&2; exit 2 ;;
esac
