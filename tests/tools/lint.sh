#!/usr/bin/env bash
#
# tests/tools/lint.sh <openapi.json>: lint an OpenAPI document with Redocly CLI's
# built-in `recommended` ruleset (lint.redocly.yaml), offline and without telemetry.
# Prints every finding as `severity rule at <JSON pointer>: message`, then the totals.
# Exits 0 when there is no error (warnings are printed but allowed), 1 when there are
# errors, 2 on bad usage or when Redocly could not run.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 <openapi.json>" >&2; exit 2; }
[[ -f $1 ]] || { echo "error: $1: no such file" >&2; exit 2; }
DOC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")

# shellcheck source=tests/tools/ensure-deps.sh
source "$(dirname "${BASH_SOURCE[0]}")/ensure-deps.sh"
ensure_tools_deps || exit 2

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

rc=0
# Run from the tools folder so that no redocly.yaml of the caller's folder applies.
(cd "$TOOLS_DIR" && "$BIN/redocly" lint --config "$TOOLS_DIR/lint.redocly.yaml" \
    --format json --max-problems 1000 "$DOC") >"$out" 2>"$err" || rc=$?

nrc=0
node - "$out" "$DOC" <<'JS' || nrc=$?
const fs = require("node:fs");
const [file, doc] = process.argv.slice(2);
let report;
try {
  report = JSON.parse(fs.readFileSync(file, "utf8"));
} catch {
  process.exit(2);
}
for (const p of report.problems) {
  const where = (p.location ?? []).map((l) => l.pointer).join(", ");
  const sev = p.severity === "warn" ? "warning" : p.severity;
  console.log(`${sev} ${p.ruleId} at ${where}: ${p.message}`);
}
const t = report.totals;
console.log(`redocly ${report.version} lint (recommended) ${doc}: ${t.errors} error(s), ${t.warnings} warning(s), ${t.ignored} ignored`);
process.exit(t.errors > 0 ? 1 : 0);
JS
case $nrc in
0) ;;
1) exit 1 ;;
*) # no JSON report: Redocly itself failed (bad file, crash)
    cat "$err" >&2
    echo "error: redocly lint exited with status $rc and no report" >&2
    exit 2 ;;
esac
# Redocly's own verdict as well: it exits non-zero on errors.
if ((rc != 0)); then
    cat "$err" >&2
    echo "error: redocly lint exited with status $rc" >&2
    exit 1
fi
