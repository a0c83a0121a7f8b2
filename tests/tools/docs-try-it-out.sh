#!/usr/bin/env bash
#
# tests/tools/docs-try-it-out.sh <BASE_URL> <TOKEN>
#
# Uses the service's /docs page (Swagger UI) in headless Chromium as a new user would:
# "Authorize" with TOKEN (a user's bearer token), then "Try it out" on POST /rooms with
# {"name": "From the docs page"} and "Execute". Passes when the page shows a 201 and that
# room, with no console error, no failed request and no request leaving BASE_URL's host;
# prints the room id on stdout. See docs-try-it-out.mjs for the details.
# Environment: SCREENSHOT=<file.png> (saved on failure), CHROMIUM (default /usr/bin/chromium),
# STEP_TIMEOUT_MS (default 20000), TOTAL_TIMEOUT_MS (default 120000).
# Exits 0 on success, 1 when the page fails, 2 on bad usage or missing tools.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 <BASE_URL> <TOKEN>" >&2
    exit 2
fi
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[[ -x $CHROMIUM ]] || {
    echo "error: $CHROMIUM not found; install Debian's chromium (apt-get install chromium) or set CHROMIUM" >&2
    exit 2
}

# shellcheck source=tests/tools/ensure-deps.sh
source "$(dirname "${BASH_SOURCE[0]}")/ensure-deps.sh"
ensure_tools_deps || exit 2
[[ -f $TOOLS_DIR/node_modules/playwright-core/package.json ]] || {
    echo "error: playwright-core is missing from $TOOLS_DIR/node_modules" >&2
    exit 2
}

# The token goes through the environment, not node's command line.
BASE_URL=$1 TOKEN=$2 CHROMIUM=$CHROMIUM exec node "$TOOLS_DIR/docs-try-it-out.mjs"
