#!/usr/bin/env bash
# `npm run bench -- NAME`: runs a benchmark and writes bench/results/NAME.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:-}
case $name in
  overlay) shift; [ "$(id -u)" = 0 ] || { echo "the overlay benchmark drives the lab: run it as root" >&2; exit 1; }
           npm run --silent build && exec npx vite-node test/bench/overlay.ts -- "$@" ;;
  churn) shift; [ "$(id -u)" = 0 ] || { echo "the churn benchmark drives the lab: run it as root" >&2; exit 1; }
         npm run --silent build && exec npx vite-node test/bench/churn.ts -- "$@" ;;
  proxy) shift; [ "$(id -u)" = 0 ] || { echo "the proxy benchmark creates a network namespace: run it as root" >&2; exit 1; }
         exec npx vite-node test/bench/proxy.ts -- "$@" ;;
  *) echo "usage: npm run bench -- overlay|proxy|churn" >&2; exit 2 ;;
esac
