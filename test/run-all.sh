#!/usr/bin/env bash
# `npm test`: builds, then runs the unit, kernel and end-to-end projects on the
# newest Docker the lab supports (29), then the end-to-end project again on
# each older one (28, 20.10): one vitest run per version, each with a lab of
# that version brought up and down by the e2e global setup. Prints a summary
# line per version and a total, and double-checks that no lab was left behind.
#
#   TSOVERLAY_DOCKER=28 npm test     everything, on that one version only
#   npm test -- <vitest args>        passed to every vitest run (e.g. a file filter)
set -euo pipefail
cd "$(dirname "$0")/.."
# Root, Node and Go first: each missing one is named with its fix, before any build.
bash scripts/preflight.sh || exit 1
[ -d node_modules ] || npm install --no-audit --no-fund
npm run --silent build
# Static checks first, each fails the run: types (stricter than the build),
# the layer rules, ESLint, Prettier, ShellCheck (installed with the lab's packages).
bash test/lab/lab.sh packages
npm run --silent check

versions=${TSOVERLAY_DOCKER:-29 28 20.10}
status=0
total_passed=0 total_failed=0 total_skipped=0
lines=()
failures=()
first=1
report=
trap 'rm -f "$report"' EXIT   # the vitest report of the run under way, if this shell dies in it
for v in $versions; do
  report=$(mktemp /tmp/tso-vitest.XXXXXX.json)
  projects=()
  # The older versions rerun what Docker can change: the end-to-end tests, but
  # not the lab's own failed-up test, the benchmarks' smoke runs, nor the
  # rolling upgrade from the previous store layout (the lab scripts, the benches
  # and the store's migration are the same for all; `docker plugin upgrade`
  # itself is plugin-upgrade.test.ts's, which runs on every version).
  [ "$first" = 1 ] || projects=(--project e2e --exclude test/e2e/lab-lifecycle.test.ts --exclude test/e2e/bench-smoke.test.ts --exclude test/e2e/rolling-upgrade.test.ts)
  echo "=== tests on Docker $v${projects:+ (end-to-end)}" >&2
  TSOVERLAY_DOCKER=$v npx vitest run "${projects[@]}" --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=1
  if [ -s "$report" ]; then
    # The counts, then one line per failure (CI shows only the end of the output:
    # each failure is named there, with the first line of its message). A file
    # that failed outside its tests (a beforeAll, an import) leaves its tests
    # "skipped": they did not run because it failed, so they count as failed.
    summary=$(node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      let passed = 0, failed = 0, skipped = 0;
      const lines = [];
      const first = (m) => (m ?? "").split("\n")[0].slice(0, 300);
      for (const file of r.testResults ?? []) {
        const rel = require("path").relative(process.cwd(), file.name);
        const tests = file.assertionResults ?? [];
        const fileFailed = file.status === "failed" && !tests.some((t) => t.status === "failed");
        for (const t of tests) {
          if (t.status === "passed") passed++;
          else if (t.status === "failed") {
            failed++;
            lines.push("failed (Docker " + process.argv[2] + "): " + rel + " > " + t.fullName + ": " + first(t.failureMessages?.[0]));
          } else if (fileFailed) failed++;
          else skipped++;
        }
        if (fileFailed) {
          if (tests.length === 0) failed++;
          lines.push("failed (Docker " + process.argv[2] + "): " + rel + " (" + tests.length + " tests did not run): " + first(file.message));
        }
      }
      console.log(passed, failed, skipped);
      for (const l of lines) console.log(l);
    ' "$report" "$v")
    read -r passed failed skipped <<<"$(head -n1 <<<"$summary")"
    while IFS= read -r f; do [ -z "$f" ] || failures+=("$f"); done < <(tail -n +2 <<<"$summary")
  else
    passed=0 failed=1 skipped=0
    status=1
  fi
  rm -f "$report"
  lines+=("summary (Docker $v): $passed passed, $failed failed, $skipped skipped")
  total_passed=$((total_passed + passed)) total_failed=$((total_failed + failed)) total_skipped=$((total_skipped + skipped))
  first=0
done

leftover=$(ip netns list | grep -c '^tso-' || true)
if [ "$leftover" != 0 ]; then
  echo "test run left $leftover lab namespaces behind; taking the lab down" >&2
  bash test/lab/lab.sh down || true
  status=1
fi
# The plain closing lines CI reads: each failure, one line per Docker version, then the total.
for f in "${failures[@]}"; do echo "$f"; done
for l in "${lines[@]}"; do echo "$l"; done
echo "summary: $total_passed passed, $total_failed failed, $total_skipped skipped"
exit $status
