#!/usr/bin/env bash
#
# tests/tools/check-client.sh <openapi.json> <workdir> [BASE_URL TOKEN]
#
# 1. generates TypeScript types from <openapi.json> with openapi-typescript at its default
#    settings into <workdir>/schema.d.ts;
# 2. checks that client/calls.ts calls every operation (method and path) of the document;
# 3. compiles client/calls.ts, copied into <workdir>, with `tsc --strict` (JavaScript emitted
#    into <workdir>);
# 4. with BASE_URL and TOKEN (a user's bearer token), runs it: a short scenario of those calls
#    against the live service at BASE_URL.
# Exits non-zero at the first step that fails (2 for bad usage).
set -euo pipefail

if [[ $# -ne 2 && $# -ne 4 ]]; then
    echo "usage: $0 <openapi.json> <workdir> [BASE_URL TOKEN]" >&2
    exit 2
fi
[[ -f $1 ]] || { echo "error: $1: no such file" >&2; exit 2; }
DOC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
mkdir -p "$2"
WORK=$(cd "$2" && pwd)
BASE_URL=${3:-}
TOKEN=${4:-}

# shellcheck source=tests/tools/ensure-deps.sh
source "$(dirname "${BASH_SOURCE[0]}")/ensure-deps.sh"
ensure_tools_deps || exit 2
CALLS=$TOOLS_DIR/client/calls.ts

step() { printf 'check-client: %s\n' "$*" >&2; }

step "openapi-typescript $DOC -> $WORK/schema.d.ts"
# From the work folder, so that no redocly.yaml of the caller's folder changes the defaults.
(cd "$WORK" && "$BIN/openapi-typescript" "$DOC" --output "$WORK/schema.d.ts") || {
    echo "error: openapi-typescript could not generate types from $DOC" >&2
    exit 1
}

step "every operation of the document is called in client/calls.ts"
node - "$DOC" "$CALLS" <<'JS'
const fs = require("node:fs");
const [doc, calls] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(doc, "utf8"));
const source = fs.readFileSync(calls, "utf8");
const methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const missing = [];
for (const [path, item] of Object.entries(spec.paths ?? {})) {
  for (const method of methods.filter((m) => item[m])) {
    const call = new RegExp(`\\.${method.toUpperCase()}\\(\\s*"${escape(path)}"`);
    if (!call.test(source)) missing.push(`${method.toUpperCase()} ${path}`);
  }
}
if (missing.length > 0) {
  console.error(`error: client/calls.ts calls no ${missing.join(", no ")}`);
  process.exit(1);
}
JS

step "tsc --strict client/calls.ts (output in $WORK)"
cp "$CALLS" "$WORK/calls.ts"
printf '{ "private": true, "type": "module" }\n' >"$WORK/package.json"
# The compiled calls.js imports openapi-fetch; node and tsc find it (and @types/node) here.
ln -sfn "$TOOLS_DIR/node_modules" "$WORK/node_modules"
(cd "$WORK" && "$BIN/tsc" --strict --noEmitOnError --target es2022 --module nodenext \
    --moduleResolution nodenext --lib es2022 --types node --outDir . --rootDir . calls.ts) || {
    echo "error: client/calls.ts does not compile against the types generated from $DOC" >&2
    exit 1
}

if [[ -n $BASE_URL ]]; then
    step "scenario against $BASE_URL"
    BASE_URL=$BASE_URL TOKEN=$TOKEN node "$WORK/calls.js"
fi
