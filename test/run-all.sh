#!/usr/bin/env bash
# `npm test`: builds, then runs the unit, kernel and end-to-end projects in one
# vitest run (the e2e global setup brings the real lab up and down), then
# double-checks that the lab left nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "npm test drives namespaces, dockerd and Consul: run it as root (sudo npm test)" >&2; exit 1; }
[ -d node_modules ] || npm install --no-audit --no-fund
npm run --silent build
npm run --silent typecheck   # the tests and every module, stricter than the build (unused locals)
status=0
report=$(mktemp /tmp/tso-vitest.XXXXXX.json)
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
if [ -s "$report" ]; then
  # The plain closing line CI reads, counted from vitest's own JSON report.
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = r.numPendingTests + r.numTodoTests;
    console.log(`summary: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  ' "$report"
else
  echo "summary: 0 passed, 1 failed (vitest wrote no report)"
  status=1
fi
rm -f "$report"
leftover=$(ip netns list | grep -c '^tso-' || true)
if [ "$leftover" != 0 ]; then
  echo "test run left $leftover lab namespaces behind; taking the lab down" >&2
  bash test/lab/lab.sh down || true
  status=1
fi
exit $status
