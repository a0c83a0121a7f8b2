# Sourced by the scripts of tests/tools: makes sure tests/tools/node_modules matches
# package-lock.json (`npm ci` once, under a lock, so that tests running in parallel share one
# install). Needs node and npm on PATH and the npm registry for the first install.
# Sets TOOLS_DIR and BIN (tests/tools/node_modules/.bin).
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=$TOOLS_DIR/node_modules/.bin

tools_deps_ok() {
    local tool
    for tool in redocly openapi-typescript tsc; do
        [[ -x $BIN/$tool ]] || return 1
    done
    # npm writes node_modules/.package-lock.json on every install; older than the lock = stale.
    [[ -f $TOOLS_DIR/node_modules/.package-lock.json &&
        ! $TOOLS_DIR/package-lock.json -nt $TOOLS_DIR/node_modules/.package-lock.json ]]
}

# The pinned tools need Node.js 20.19 or later (Debian 12's own nodejs is 18: install a newer
# one, e.g. from NodeSource, when it is what the machine has).
node_is_recent() {
    local version major minor
    version=$(node --version 2>/dev/null) || return 1
    version=${version#v}
    major=${version%%.*}
    minor=${version#*.}
    minor=${minor%%.*}
    ((major > 20 || (major == 20 && minor >= 19)))
}

ensure_tools_deps() {
    node_is_recent || {
        echo "error: tests/tools needs Node.js 20.19 or later and npm (found: $(node --version 2>/dev/null || echo none))" >&2
        return 1
    }
    tools_deps_ok && return 0
    command -v npm >/dev/null 2>&1 || {
        echo "error: npm not found; tests/tools needs Node.js 20.19+ and npm" >&2
        return 1
    }
    (
        flock 9
        if ! tools_deps_ok; then
            echo "tests/tools: npm ci (installing the pinned tools)" >&2
            cd "$TOOLS_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2
        fi
    ) 9>"$TOOLS_DIR/.npm-install.lock"
}
