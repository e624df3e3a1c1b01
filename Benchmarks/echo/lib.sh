# Shared by run-echo-bench.sh, run-churn-bench.sh, echo-callgrind.sh, echo-allocs.sh, echo-idle-rss.sh (and
# through them run-udp-bench.sh), pipe-bench.sh, run-tls-bench.sh and tls-callgrind.sh:
# building the tools and servers, starting a server and reading its port, stopping it, and
# cleaning up every process a script started; and for run-echo-bench.sh, run-churn-bench.sh
# and run-tls-bench.sh the skeleton of their runs (rounds_start, rounds_run, rounds_finish:
# every server started, then loaded in turn, round after round, and folded into medians).
# Source it; it is not a program.
#
# Servers, by name (ECHO_SERVERS picks and orders them; a script's --servers flag sets it):
#   ours            swift-asyncio's Examples/TCPEchoServer (`tcp-echo-server`), protocol API
#   ours-streams    swift-asyncio's streams API (Sources/StreamsEchoServer, built here)
#   ours-reuse-streams  the same with read(into:) and a reused buffer (streams-echo-server --reuse;
#                   64 KiB, or STREAMS_BUFFER bytes)
#   ours-iter-streams   the same iterating the reader: for try await chunk in reader (--iterate)
#   c               echo/c_echo_server.c, the speed-of-light baseline
#   nio             SwiftNIO (Sources/NIOEchoServer, one event-loop thread)
#   asyncio         py_echo_server.py --loop asyncio --api protocol
#   asyncio-streams py_echo_server.py --loop asyncio --api streams
#   uvloop          py_echo_server.py --loop uvloop --api protocol
#   uvloop-streams  py_echo_server.py --loop uvloop --api streams
#
# ECHO_TRANSPORT=unix (a script's --unix flag) serves over Unix stream sockets instead of
# loopback TCP: our server is then `unix-echo-server --path P`, the others get --unix P.
# ECHO_TRANSPORT=udp (a script's --udp flag) echoes datagrams over loopback UDP instead: the
# load generator is echo/udp_loadgen.c and the servers are
#   ours            swift-asyncio's Examples/UDPEchoServer (`udp-echo-server`), DatagramProtocol
#   c               echo/c_udp_echo_server.c, the baseline (recvfrom/sendto on epoll)
#   nio             SwiftNIO (Sources/NIOUDPEchoServer, DatagramBootstrap, one thread)
#   asyncio, uvloop py_echo_server.py --udp (a DatagramProtocol)
# (the *-streams servers have no UDP form and are skipped).
# ECHO_TRANSPORT=tls (run-tls-bench.sh, tls-callgrind.sh, a script's --tls flag) echoes over
# TLS on loopback TCP, with the certificate and key of Certificates/ (server.crt, EC P-256);
# the load generator is echo/tls_loadgen.c (OpenSSL; it alone picks TLS 1.3 with
# TLS_AES_128_GCM_SHA256 and X25519) and the servers are
#   ours            swift-asyncio's Examples/TLSEchoServer (`tls-echo-server`)
#   c               echo/c_tls_echo_server.c, the baseline (OpenSSL on epoll, socket BIOs)
#   nio             SwiftNIO + NIOSSL (Sources/NIOTLSEchoServer, one thread)
#   go              echo/go_tls_echo_server.go (crypto/tls, GOMAXPROCS 1)
#   uvloop, asyncio py_echo_server.py --tls (the loop's own TLS over the ssl module)
# Go is built with `CGO_ENABLED=0 go build` into .build/echo (GOCACHE and GOPATH there too;
# rebuilt when the source is newer); a missing
# `go` is installed with apt-get (golang-go) when the script runs as root.
#
# Environment: PYTHON (default python3), OURS_BIN (use this tcp-echo-server, or with --unix
# unix-echo-server, with --udp udp-echo-server, with TLS tls-echo-server, binary instead of
# building one), NO_BUILD=1 (use what is built, build nothing), GO (default go).

ECHO_ALL_SERVERS="ours ours-streams ours-reuse-streams ours-iter-streams c nio nio-async asyncio asyncio-streams uvloop uvloop-streams"
ECHO_UDP_SERVERS="ours c nio asyncio uvloop"
ECHO_TLS_SERVERS="ours c nio go uvloop"
ECHO_TLS_KNOWN="ours ours-streams ours-reuse-streams c nio go uvloop asyncio"

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo_dir="$(cd "$bench_dir/.." && pwd)"
echo_dir="$bench_dir/echo"
tools_dir="$bench_dir/.build/echo"           # loadgen, c_echo_server, malloc_count.so, ...
ours_scratch="$repo_dir/.build-bench"         # our server's build folder (not the root .build)
python="${PYTHON:-python3}"
certificates_dir="$repo_dir/Certificates"      # TLS: server.crt, server.key (EC P-256)

# Every process a script starts in the background is recorded in $work_dir/pids (a file, so
# that starts inside subshells count too) and killed on exit; notes go to $work_dir/notes.
work_dir="$(mktemp -d "${TMPDIR:-/tmp}/echo-bench.XXXXXX")"
: >"$work_dir/pids"
: >"$work_dir/notes"

note() {
    echo "$*" >>"$work_dir/notes"
    echo "note: $*" >&2
}

log() { echo "$*" >&2; }

cleanup() {
    set +e
    local pid pids
    pids="$(cat "$work_dir/pids" 2>/dev/null)"
    for pid in $pids; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for pid in $pids; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---- building ----

build_tools() {
    mkdir -p "$tools_dir"
    local src
    for src in loadgen churn_loadgen c_echo_server udp_loadgen c_udp_echo_server pipe_pump; do
        if [[ ! -x "$tools_dir/$src" || "$echo_dir/$src.c" -nt "$tools_dir/$src" ]]; then
            cc -O2 -Wall -pthread -o "$tools_dir/$src" "$echo_dir/$src.c" || return 1
        fi
    done
    if [[ ! -f "$tools_dir/malloc_count.so" || "$echo_dir/malloc_count.c" -nt "$tools_dir/malloc_count.so" ]]; then
        cc -O2 -Wall -shared -fPIC -o "$tools_dir/malloc_count.so" "$echo_dir/malloc_count.c" || return 1
    fi
    if [[ "${ECHO_TRANSPORT:-tcp}" == tls ]]; then
        for src in tls_loadgen c_tls_echo_server; do
            if [[ ! -x "$tools_dir/$src" || "$echo_dir/$src.c" -nt "$tools_dir/$src" ]]; then
                cc -O2 -Wall -o "$tools_dir/$src" "$echo_dir/$src.c" -lssl -lcrypto || {
                    log "$src.c did not build (it needs OpenSSL's headers: apt-get install libssl-dev)"
                    return 1
                }
            fi
        done
    fi
}

# Builds echo/go_tls_echo_server.go into .build/echo (installing golang-go if `go` is missing
# and we are root); sets go_bin. Returns 1 (with a note) if there is no Go.
go_bin=""
build_go() {
    local go="${GO:-go}" bin="$tools_dir/go_tls_echo_server"
    if [[ "${NO_BUILD:-0}" != 1 ]]; then
        if ! command -v "$go" >/dev/null; then
            if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
                log "Installing Go (apt-get install golang-go)..."
                { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go \
                    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go; }
                } >"$work_dir/go-install.log" 2>&1
            fi
            command -v "$go" >/dev/null || { note "no Go compiler (apt-get install golang-go); the Go rows are skipped"; return 1; }
        fi
        if [[ ! -x "$bin" || "$echo_dir/go_tls_echo_server.go" -nt "$bin" ]]; then
            log "Building go_tls_echo_server ($("$go" version | awk '{ print $3 }'))..."
            # CGO_ENABLED=0: a static binary of Go alone (no libc, no cgo threads), which
            # valgrind can run.
            if ! (cd "$echo_dir" && CGO_ENABLED=0 GOCACHE="$tools_dir/go-cache" GOPATH="$tools_dir/go-path" \
                GO111MODULE=off "$go" build -o "$bin" go_tls_echo_server.go) >"$work_dir/go-build.log" 2>&1; then
                tail -n 20 "$work_dir/go-build.log" >&2
                note "go_tls_echo_server did not build; the Go rows are skipped"
                return 1
            fi
        fi
    fi
    [[ -x "$bin" ]] || { note "no go_tls_echo_server at $bin; the Go rows are skipped"; return 1; }
    go_bin="$bin"
}

# build_bench_product PRODUCT: builds a product of the Benchmarks package (release) and
# prints its path.
build_bench_product() {
    local product="$1" bin_path
    bin_path="$(cd "$bench_dir" && swift build -c release --show-bin-path 2>/dev/null)/$product"
    if [[ "${NO_BUILD:-0}" != 1 ]]; then
        log "Building $product (release; a first build takes a few minutes)..."
        if ! (cd "$bench_dir" && swift build -c release --product "$product") >"$work_dir/$product-build.log" 2>&1; then
            tail -n 30 "$work_dir/$product-build.log" >&2
            note "$product did not build; its rows are skipped"
            return 1
        fi
    fi
    [[ -x "$bin_path" ]] || { note "no $product binary at $bin_path; its rows are skipped"; return 1; }
    echo "$bin_path"
}

nio_bin=""
build_nio() {
    if [[ "${ECHO_TRANSPORT:-tcp}" == udp ]]; then
        nio_bin="$(build_bench_product nio-udp-echo-server)"
    elif [[ "${ECHO_TRANSPORT:-tcp}" == tls ]]; then
        nio_bin="$(build_bench_product nio-tls-echo-server)"
    else
        nio_bin="$(build_bench_product nio-echo-server)"
    fi
}

streams_bin=""
build_streams() { streams_bin="$(build_bench_product streams-echo-server)"; }

ours_bin=""
build_ours() {
    local product=tcp-echo-server
    [[ "${ECHO_TRANSPORT:-tcp}" == unix ]] && product=unix-echo-server
    [[ "${ECHO_TRANSPORT:-tcp}" == udp ]] && product=udp-echo-server
    [[ "${ECHO_TRANSPORT:-tcp}" == tls ]] && product=tls-echo-server
    if [[ -n "${OURS_BIN:-}" ]]; then
        [[ -x "$OURS_BIN" ]] || { note "OURS_BIN=$OURS_BIN is not an executable; swift-asyncio rows are skipped"; return 1; }
        ours_bin="$OURS_BIN"
        return 0
    fi
    local bin_path="$ours_scratch/release/$product"
    if [[ "${NO_BUILD:-0}" != 1 ]]; then
        if ! grep -q "\"$product\"" "$repo_dir/Package.swift" 2>/dev/null; then
            note "swift-asyncio has no $product product yet; its rows are skipped"
            return 1
        fi
        log "Building $product (release, --scratch-path .build-bench)..."
        if ! (cd "$repo_dir" && swift build -c release --product "$product" --scratch-path "$ours_scratch") \
            >"$work_dir/ours-build.log" 2>&1; then
            tail -n 30 "$work_dir/ours-build.log" >&2
            note "$product did not build; swift-asyncio rows are skipped"
            return 1
        fi
    fi
    [[ -x "$bin_path" ]] || { note "no $product binary at $bin_path; swift-asyncio rows are skipped"; return 1; }
    ours_bin="$bin_path"
}

# build_ours_product PRODUCT: builds one product of the repository (release, in
# .build-bench; one product per `swift build`, which only honours the last --product it is
# given) and prints its path. OURS_BIN_<PRODUCT> (dashes as underscores, e.g.
# OURS_BIN_pipe_echo) uses a given binary instead; NO_BUILD=1 builds nothing.
build_ours_product() {
    local product="$1" override="OURS_BIN_${1//-/_}"
    if [[ -n "${!override:-}" ]]; then
        [[ -x "${!override}" ]] || { note "$override=${!override} is not an executable"; return 1; }
        echo "${!override}"
        return 0
    fi
    local bin_path="$ours_scratch/release/$product"
    if [[ "${NO_BUILD:-0}" != 1 ]]; then
        if ! grep -q "\"$product\"" "$repo_dir/Package.swift" 2>/dev/null; then
            note "swift-asyncio has no $product product yet"
            return 1
        fi
        log "Building $product (release, --scratch-path .build-bench)..."
        if ! (cd "$repo_dir" && swift build -c release --product "$product" --scratch-path "$ours_scratch") \
            >"$work_dir/$product-build.log" 2>&1; then
            tail -n 30 "$work_dir/$product-build.log" >&2
            note "$product did not build"
            return 1
        fi
    fi
    [[ -x "$bin_path" ]] || { note "no $product binary at $bin_path"; return 1; }
    echo "$bin_path"
}

have_uvloop=0
uvloop_tried=0
ensure_uvloop() {
    if [[ $uvloop_tried == 1 ]]; then [[ $have_uvloop == 1 ]]; return; fi
    uvloop_tried=1
    if "$python" -c 'import uvloop' >/dev/null 2>&1; then have_uvloop=1; return 0; fi
    log "Installing uvloop..."
    if "$python" -m pip install --quiet --disable-pip-version-check uvloop >/dev/null 2>&1 \
        && "$python" -c 'import uvloop' >/dev/null 2>&1; then
        have_uvloop=1
        return 0
    fi
    note "uvloop could not be installed; its rows are skipped"
    return 1
}

# The interpreter itself, not a pyenv shim (a shell script): LD_PRELOAD and valgrind must
# see the python process, and $! must be its pid.
python_exe() { "$python" -c 'import sys; print(sys.executable)'; }

# Builds what the selected servers need; sets `servers` to those that can run, and `loadgen`
# to the load generator of the transport (loadgen, udp_loadgen with ECHO_TRANSPORT=udp,
# tls_loadgen with ECHO_TRANSPORT=tls).
prepare_servers() {
    build_tools || { echo "could not build the C tools" >&2; exit 1; }
    servers=()
    loadgen="$tools_dir/loadgen"
    local name all="$ECHO_ALL_SERVERS"
    if [[ "${ECHO_TRANSPORT:-tcp}" == udp ]]; then
        loadgen="$tools_dir/udp_loadgen"
        all="$ECHO_UDP_SERVERS"
    fi
    if [[ "${ECHO_TRANSPORT:-tcp}" == tls ]]; then
        loadgen="$tools_dir/tls_loadgen"
        all="$ECHO_TLS_SERVERS"
    fi
    for name in ${ECHO_SERVERS:-$all}; do
        if [[ "${ECHO_TRANSPORT:-tcp}" == tls ]]; then
            case "$name" in
                ours) build_ours && servers+=(ours) ;;
                ours-streams | ours-reuse-streams) build_streams && servers+=("$name") ;;
                c) servers+=(c) ;;
                nio) build_nio && servers+=(nio) ;;
                go) build_go && servers+=(go) ;;
                asyncio) servers+=(asyncio) ;;
                uvloop) ensure_uvloop && servers+=(uvloop) ;;
                *) echo "unknown TLS server: $name (known: $ECHO_TLS_KNOWN)" >&2; exit 2 ;;
            esac
            continue
        fi
        if [[ "${ECHO_TRANSPORT:-tcp}" == udp && ( "$name" == *-streams || "$name" == nio-async ) ]]; then
            log "$name: no UDP form (streams are for byte streams); skipped"
            continue
        fi
        case "$name" in
            ours) build_ours && servers+=(ours) ;;
            ours-streams | ours-reuse-streams | ours-iter-streams) build_streams && servers+=("$name") ;;
            c) servers+=(c) ;;
            nio | nio-async) build_nio && servers+=("$name") ;;
            asyncio | asyncio-streams) servers+=("$name") ;;
            uvloop | uvloop-streams)
                ensure_uvloop && servers+=("$name") ;;
            *) echo "unknown server: $name (known: $ECHO_ALL_SERVERS)" >&2; exit 2 ;;
        esac
    done
    true
}

label_of() {
    if [[ "${ECHO_TRANSPORT:-tcp}" == tls ]]; then
        case "$1" in
            ours) echo "swift-asyncio TLS" ;;
            ours-streams) echo "swift-asyncio TLS streams" ;;
            ours-reuse-streams) echo "swift-asyncio TLS streams, read(into:)" ;;
            c) echo "C + OpenSSL (baseline)" ;;
            nio) echo "SwiftNIO + NIOSSL" ;;
            go) echo "Go crypto/tls" ;;
            uvloop) echo "uvloop SSL" ;;
            asyncio) echo "asyncio SSL" ;;
            *) echo "$1" ;;
        esac
        return
    fi
    if [[ "${ECHO_TRANSPORT:-tcp}" == udp ]]; then
        case "$1" in
            ours) echo "swift-asyncio DatagramProtocol"; return ;;
            nio) echo "SwiftNIO DatagramBootstrap"; return ;;
            asyncio) echo "asyncio DatagramProtocol"; return ;;
            uvloop) echo "uvloop DatagramProtocol"; return ;;
        esac
    fi
    case "$1" in
        ours) echo "swift-asyncio protocol" ;;
        ours-streams) echo "swift-asyncio streams" ;;
        ours-reuse-streams) echo "swift-asyncio streams, read(into:)" ;;
        ours-iter-streams) echo "swift-asyncio streams, for try await" ;;
        c) echo "C epoll (baseline)" ;;
        nio) echo "SwiftNIO" ;;
        nio-async) echo "SwiftNIO NIOAsyncChannel" ;;
        asyncio) echo "asyncio protocol" ;;
        asyncio-streams) echo "asyncio streams" ;;
        uvloop) echo "uvloop protocol" ;;
        uvloop-streams) echo "uvloop streams" ;;
        *) echo "$1" ;;
    esac
}

# Fills the array `server_cmd` with the command line of server $1, listening on an ephemeral
# loopback port, or with ECHO_TRANSPORT=unix on the socket file $server_sock.
server_command() {
    local listen=(--port 0) ours_listen=(--port 0)
    server_sock=""
    if [[ "${ECHO_TRANSPORT:-tcp}" == unix ]]; then
        server_sock="$work_dir/$1.sock"
        listen=(--unix "$server_sock") ours_listen=(--path "$server_sock")
    fi
    if [[ "${ECHO_TRANSPORT:-tcp}" == tls ]]; then
        local tls=(--cert "$certificates_dir/server.crt" --key "$certificates_dir/server.key")
        case "$1" in
            ours) server_cmd=("$ours_bin" --host 127.0.0.1 --port 0 "${tls[@]}") ;;
            ours-streams) server_cmd=("$streams_bin" --host 127.0.0.1 --port 0 "${tls[@]}") ;;
            ours-reuse-streams) server_cmd=("$streams_bin" --host 127.0.0.1 --port 0 "${tls[@]}" --reuse) ;;
            c) server_cmd=("$tools_dir/c_tls_echo_server" --host 127.0.0.1 --port 0 "${tls[@]}") ;;
            nio) server_cmd=("$nio_bin" --host 127.0.0.1 --port 0 "${tls[@]}") ;;
            go) server_cmd=("$go_bin" --host 127.0.0.1 --port 0 "${tls[@]}") ;;
            asyncio | uvloop) server_cmd=("$(python_exe)" "$echo_dir/py_echo_server.py" --tls --loop "$1" --api protocol --host 127.0.0.1 --port 0 "${tls[@]}") ;;
            *) return 1 ;;
        esac
        return 0
    fi
    if [[ "${ECHO_TRANSPORT:-tcp}" == udp ]]; then
        case "$1" in
            ours) server_cmd=("$ours_bin" --port 0) ;;
            c) server_cmd=("$tools_dir/c_udp_echo_server" --port 0) ;;
            nio) server_cmd=("$nio_bin" --port 0) ;;
            asyncio | uvloop) server_cmd=("$(python_exe)" "$echo_dir/py_echo_server.py" --udp --loop "$1" --port 0) ;;
            *) return 1 ;;
        esac
        return 0
    fi
    case "$1" in
        ours) server_cmd=("$ours_bin" "${ours_listen[@]}") ;;
        ours-streams) server_cmd=("$streams_bin" "${listen[@]}") ;;
        ours-reuse-streams) server_cmd=("$streams_bin" "${listen[@]}" --reuse ${STREAMS_BUFFER:+--buffer "$STREAMS_BUFFER"}) ;;
        ours-iter-streams) server_cmd=("$streams_bin" "${listen[@]}" --iterate) ;;
        c) server_cmd=("$tools_dir/c_echo_server" "${listen[@]}") ;;
        nio) server_cmd=("$nio_bin" "${listen[@]}") ;;
        nio-async) server_cmd=("$nio_bin" "${listen[@]}" --async-channel) ;;
        asyncio) server_cmd=("$(python_exe)" "$echo_dir/py_echo_server.py" --loop asyncio --api protocol "${listen[@]}") ;;
        asyncio-streams) server_cmd=("$(python_exe)" "$echo_dir/py_echo_server.py" --loop asyncio --api streams "${listen[@]}") ;;
        uvloop) server_cmd=("$(python_exe)" "$echo_dir/py_echo_server.py" --loop uvloop --api protocol "${listen[@]}") ;;
        uvloop-streams) server_cmd=("$(python_exe)" "$echo_dir/py_echo_server.py" --loop uvloop --api streams "${listen[@]}") ;;
        *) return 1 ;;
    esac
}

# start_server LOGNAME TIMEOUT_S [PREFIX...] COMMAND...
# Starts PREFIX COMMAND (PREFIX: taskset, env, valgrind..., all of which exec the command)
# with stdout and stderr in $work_dir/LOGNAME.{out,err}, waits for `listening on ...:PORT`
# (with ECHO_TRANSPORT=unix: for `listening on ...` and the socket file $server_sock), and
# sets server_pid, server_port and server_addr (loadgen's address arguments). Returns 1
# (after printing the server's stderr) if that does not come within TIMEOUT_S seconds or
# the server exits.
start_server() {
    local logname="$1" timeout_s="$2"
    shift 2
    local out="$work_dir/$logname.out" err="$work_dir/$logname.err"
    : >"$out"
    "$@" >"$out" 2>"$err" </dev/null &
    server_pid=$!
    echo "$server_pid" >>"$work_dir/pids"
    server_port="" server_addr=()
    local deadline=$((SECONDS + timeout_s))
    while ((SECONDS <= deadline)); do
        if [[ -n "$server_sock" ]]; then
            if grep -q '^listening on ' "$out" && [[ -S "$server_sock" ]]; then
                server_addr=(--unix "$server_sock")
                return 0
            fi
        else
            server_port="$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$out" | head -n1)"
            if [[ -n "$server_port" ]]; then
                server_addr=(--host 127.0.0.1 --port "$server_port")
                return 0
            fi
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            log "server exited before listening: $*"
            tail -n 20 "$err" >&2
            return 1
        fi
        sleep 0.05
    done
    log "server printed no 'listening on HOST:PORT' line within ${timeout_s}s: $*"
    tail -n 20 "$err" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
    return 1
}

# stop_server TIMEOUT_S: SIGTERM, wait up to TIMEOUT_S for a normal exit, else SIGKILL.
# Sets server_status to "exit N", "signal NAME" or "hung (killed)". (The `|| rc=$?` keeps
# a non-zero exit from ending a `set -e` script.)
stop_server() {
    local timeout_s="${1:-10}" rc=0
    if ! kill -0 "$server_pid" 2>/dev/null; then
        wait "$server_pid" 2>/dev/null || rc=$?
        server_status="$(describe_status "$rc") before SIGTERM"
        return
    fi
    kill -TERM "$server_pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout_s))
    while kill -0 "$server_pid" 2>/dev/null && ((SECONDS <= deadline)); do sleep 0.05; done
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_status="hung after SIGTERM (killed)"
        return
    fi
    wait "$server_pid" 2>/dev/null || rc=$?
    server_status="$(describe_status "$rc")"
}

describe_status() {
    local rc="$1"
    if ((rc > 128)); then echo "signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"; else echo "exit $rc"; fi
}

# Field of a loadgen result line: result_field LINE KEY
result_field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

# Process CPU time (user + system, all threads, also the exited ones) in microseconds.
cpu_us() {
    local stat ticks
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"               # the fields after the command name
    read -r -a fields <<<"$stat"      # fields[0] is field 3 (state)
    ticks=$((fields[11] + fields[12])) # utime (14) + stime (15)
    echo $((ticks * 1000000 / $(getconf CLK_TCK)))
}

# Non-idle CPU time of the whole machine (user + nice + system, all CPUs) and steal, in µs:
# "BUSY STEAL". Interrupt and softirq time are left out: loopback traffic's own packet
# processing lands there, and in no process's utime/stime.
machine_cpu_us() {
    awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.0f %.0f\n", ($2 + $3 + $4) * 1e6 / hz, $9 * 1e6 / hz; exit }' /proc/stat
}

# wait_quiet WHERE: waits up to $quiet_wait seconds until the machine is quiet (under 10% of
# one CPU busy, user + system, all processes, over half a second); if it never is, notes that
# with WHERE (e.g. "1 KiB, repetition 3") and goes on.
wait_quiet() {
    local where="${1:-}" deadline=$((SECONDS + quiet_wait)) a b waited=0
    while :; do
        read -r a _ < <(machine_cpu_us)
        sleep 0.5
        read -r b _ < <(machine_cpu_us)
        (((b - a) < 50000)) && return 0
        if ((SECONDS >= deadline)); then
            note "the machine was still busy after waiting ${quiet_wait}s${where:+ ($where)}"
            return 0
        fi
        if ((waited == 0)); then log "  waiting for the machine to be quiet ..."; waited=1; fi
    done
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

machine_line() {
    local model
    model="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
    echo "Machine: $(nproc) CPUs, ${model:-unknown CPU}, $(uname -sr); $(date -u '+%Y-%m-%d %H:%M UTC')"
}

# "Versions: Swift ..., Python ..., uvloop ..., cc ...": the toolchains of the servers.
versions_line() {
    echo "Versions: $(swift --version 2>/dev/null | head -n1 | sed 's/ (.*//'), $("$python" --version 2>&1)$(
        [[ $have_uvloop == 1 ]] && echo ", uvloop $("$python" -c 'import uvloop; print(uvloop.__version__)')"), $(cc --version | head -n1)"
}

# The repository's state the benchmarked binaries were built from: commit, and the files
# changed in the working tree, if any.
tree_line() {
    local head changed
    head="$(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null)" || { echo "Tree: not a git checkout"; return; }
    changed="$(git -C "$repo_dir" status --porcelain --untracked-files=no -- Sources Examples Package.swift 2>/dev/null | awk '{ print $2 }' | tr '\n' ' ')"
    echo "Tree: $head${changed:+, with uncommitted changes to ${changed% }}"
}

print_notes() {
    if [[ -s "$work_dir/notes" ]]; then
        echo
        sed 's/^/- /' "$work_dir/notes"
    fi
}

# Starts a background helper (not a server): bg_start OUTFILE COMMAND...; sets bg_pid.
bg_start() {
    local out="$1"
    shift
    "$@" >"$out" 2>&1 </dev/null &
    bg_pid=$!
    echo "$bg_pid" >>"$work_dir/pids"
}

# Progress of a long run on stderr: progress_init TOTAL once, then progress_cell WHAT before
# each cell; prints "cell n of N: WHAT, ~T left" (T from the mean time of the cells so far).
# progress_total stays empty until progress_init (rounds_run then prints no cells).
progress_total=""
progress_init() {
    progress_total="$1" progress_done=0 progress_started=$SECONDS
}
progress_cell() {
    local left="" elapsed=$((SECONDS - progress_started))
    if ((progress_done > 0)); then
        local seconds=$((elapsed * (progress_total - progress_done) / progress_done))
        left=", ~$(format_duration "$seconds") left"
    fi
    progress_done=$((progress_done + 1))
    log "cell $progress_done of $progress_total: $1$left"
}
format_duration() {  # seconds -> "42 s", "3 min 5 s", "1 h 2 min"
    local s="$1"
    if ((s < 60)); then echo "$s s"
    elif ((s < 3600)); then echo "$((s / 60)) min $((s % 60)) s"
    else echo "$((s / 3600)) h $((s % 3600 / 60)) min"; fi
}

# ---- rounds: every server started, then loaded in turn (run-echo-bench.sh, run-churn-bench.sh, run-tls-bench.sh) ----
#
# All servers of a set of rounds are started at once (idle ones cost nothing) and the
# repetitions go round them, so that a drift of the machine over the run (other load, the
# kernel's state) spreads over every server instead of falling on one. A script runs a set as
#
#   pin_cpus                                  once: pin_server, pin_load
#   progress_init $((repeats * ${#servers[@]} * SETS))   once, or before each rounds_run;
#                                             optional: without it, no progress cells
#   rounds_start WARM_FN TAG [WHERE [KEY]]    start and warm up every server of $servers
#   rounds_run MEASURE_FN                     --repeats rounds of one repetition per server
#   rounds_finish MEDIANS [EXTRA_FN]          stop them; one row per server in $results
#
# and then prints its table from $results. The script sets `warmup` (seconds, 0 for none),
# `repeats`, `quiet_wait` (see wait_quiet) and `results` (a file of rows), and writes:
#   WARM_FN NAME     one warm-up load of $warmup seconds against server NAME;
#   MEASURE_FN NAME  one repetition against server NAME: a line of figures (columns split by
#                    spaces) appended to $work_dir/reps.NAME.
# Both are called with server_pid and server_addr (start_server's) set to NAME's server, and
# must return 0: a load that fails marks the server failed itself (state_of[NAME]=failed,
# with a note), which skips it in the rounds left and makes its row FAILED.
#
# WHERE, if given, names the set in the output (e.g. "1 KiB" for a message size): notes end
# with " (WHERE)", log lines start with "[WHERE] ", each round is announced as "[WHERE]
# repetition r of R", and progress cells and wait_quiet say "WHERE, ...". KEY, if given,
# begins each of the set's rows in $results (e.g. the size in bytes): "[KEY ]NAME ...".
#
# Optional hooks, off unless the script sets them (once, before its first rounds_start):
#   rounds_ready_fn=FN     FN NAME runs once server NAME has started and, unless $warmup is 0,
#                          been warmed up (whether or not the warm-up failed it), with
#                          server_pid set: e.g. to read its memory before the rounds;
#   rounds_stopping_fn=FN  FN NAME runs just before rounds_finish stops server NAME, with
#                          server_pid set: e.g. to read its memory after the rounds;
#   rounds_stop_stderr=N   the note of a server that did not exit 0 on SIGTERM ends with
#                          "; its stderr ends with: " and the last N lines of its stderr.
rounds_ready_fn="" rounds_stopping_fn="" rounds_stop_stderr=0

# Per started server of the current set: its pid, its load generator address (server_addr,
# words split by spaces) and its state, ok or failed.
declare -gA pid_of=() addr_of=() state_of=()
rounds_active=() rounds_tag="" rounds_where="" rounds_key=""

# pin_cpus: sets pin_server (taskset -c 0) and pin_load (taskset -c 1), the command prefixes
# that put a server and its load generator on CPUs of their own; on a single CPU both are
# empty, with a note.
pin_cpus() {
    if (($(nproc) >= 2)); then
        pin_server=(taskset -c 0) pin_load=(taskset -c 1)
    else
        pin_server=() pin_load=()
        note "fewer than 2 CPUs: server and load generator are not pinned"
    fi
}

# rounds_start WARM_FN TAG [WHERE [KEY]]: starts every server of $servers (server_command,
# pinned with $pin_server; output in $work_dir/NAME-TAG.{out,err}) and, unless $warmup is 0,
# warms each up with WARM_FN NAME as soon as it listens; then runs $rounds_ready_fn NAME, if
# set. A server that does not start gets a note and a FAILED row at once; the others, an
# empty $work_dir/reps.NAME, state ok, and a place in rounds_active, in the order of $servers.
rounds_start() {
    local warm_fn="$1" name label
    rounds_tag="$2" rounds_where="${3:-}" rounds_key="${4:-}" rounds_active=()
    for name in "${servers[@]}"; do
        label="$(label_of "$name")"
        server_command "$name"
        if ! start_server "$name-$rounds_tag" 60 "${pin_server[@]}" "${server_cmd[@]}"; then
            note "$label did not start${rounds_where:+ ($rounds_where)}"
            echo "${rounds_key:+$rounds_key }$name FAILED" >>"$results"
            continue
        fi
        pid_of[$name]="$server_pid" addr_of[$name]="${server_addr[*]}" state_of[$name]=ok
        : >"$work_dir/reps.$name"
        rounds_active+=("$name")
        if [[ "$warmup" != 0 ]]; then
            log "${rounds_where:+[$rounds_where] }warming up $label ..."
            "$warm_fn" "$name"
        fi
        if [[ -n "$rounds_ready_fn" ]]; then "$rounds_ready_fn" "$name"; fi
    done
}

# rounds_run MEASURE_FN: $repeats rounds; in each, every started server in turn gets a
# progress cell (after progress_init only) and, while its state is ok, wait_quiet (if
# $quiet_wait > 0) and one MEASURE_FN NAME. The progress total (progress_init: $repeats
# cells for each server of $servers) first loses the cells of the servers that did not start.
rounds_run() {
    local measure_fn="$1" r name progress=0
    if [[ -n "${progress_total:-}" ]]; then
        progress=1
        progress_total=$((progress_total - repeats * (${#servers[@]} - ${#rounds_active[@]})))
    fi
    for ((r = 1; r <= repeats; r++)); do
        [[ -z "$rounds_where" ]] || log "[$rounds_where] repetition $r of $repeats"
        for name in "${rounds_active[@]}"; do
            if ((progress)); then
                progress_cell "${rounds_where:+$rounds_where, }$(label_of "$name"), repetition $r of $repeats"
            fi
            [[ "${state_of[$name]}" == ok ]] || continue
            ((quiet_wait > 0)) && wait_quiet "${rounds_where:+$rounds_where, }repetition $r"
            server_pid="${pid_of[$name]}"
            read -r -a server_addr <<<"${addr_of[$name]}"
            "$measure_fn" "$name"
        done
    done
}

# rounds_finish MEDIANS [EXTRA_FN]: stops every started server (after $rounds_stopping_fn
# NAME, if set; stop_server 10; a status other than "exit 0" is noted, with the end of its
# stderr if $rounds_stop_stderr > 0) and appends its row to $results: "[KEY ]NAME" and the
# medians of columns 1 to MEDIANS of its repetitions, each column on its own, then what
# EXTRA_FN NAME REPS_FILE prints (more columns; it may note things about the repetitions
# too); or "[KEY ]NAME FAILED" if the server failed or has no repetitions.
rounds_finish() {
    local medians="$1" extra_fn="${2:-}" name reps row stderr_tail
    for name in "${rounds_active[@]}"; do
        server_pid="${pid_of[$name]}"
        if [[ -n "$rounds_stopping_fn" ]]; then "$rounds_stopping_fn" "$name"; fi
        stop_server 10
        if [[ "$server_status" != "exit 0" ]]; then
            stderr_tail=""
            if ((rounds_stop_stderr > 0)); then
                stderr_tail="; its stderr ends with: $(tail -n "$rounds_stop_stderr" "$work_dir/$name-$rounds_tag.err" | tr '\n' ' ')"
            fi
            note "$(label_of "$name")${rounds_where:+ ($rounds_where)}: after SIGTERM: $server_status$stderr_tail"
        fi
        reps="$work_dir/reps.$name"
        if [[ "${state_of[$name]}" == ok && -s "$reps" ]]; then
            row="$(column_medians "$reps" "$medians")"
            if [[ -n "$extra_fn" ]]; then row+=" $("$extra_fn" "$name" "$reps")"; fi
            echo "${rounds_key:+$rounds_key }$name $row" >>"$results"
        else
            echo "${rounds_key:+$rounds_key }$name FAILED" >>"$results"
        fi
    done
}

# column_medians FILE N: the medians of columns 1 to N of FILE (lines of numbers split by
# spaces), each column on its own, on one line.
column_medians() {
    local file="$1" n="$2" c cols=()
    for ((c = 1; c <= n; c++)); do cols+=("$(awk -v c=$c '{ print $c }' "$file" | median)"); done
    echo "${cols[*]}"
}

# column_range FILE C: the smallest and the largest number of column C of FILE: "MIN MAX".
column_range() {
    awk -v c="$2" '{ print $c }' "$1" | sort -g | awk 'NR == 1 { min = $0 } { max = $0 } END { print min, max }'
}

# rounds_note_disturbed NAME REPS OTHER_COL STEAL_COL: for an EXTRA_FN of rounds_finish, a
# note (ending " (WHERE)") if other processes disturbed one of server NAME's repetitions:
# the CPU they used (column OTHER_COL of REPS, in % of one CPU) over 10, or steal (column
# STEAL_COL, %) over 5.
rounds_note_disturbed() {
    local name="$1" reps="$2" worst_other worst_steal
    worst_other="$(awk -v c="$3" '{ print $c }' "$reps" | sort -n | tail -n1)"
    worst_steal="$(awk -v c="$4" '{ print $c }' "$reps" | sort -n | tail -n1)"
    if ((worst_other > 10 || worst_steal > 5)); then
        note "$(label_of "$name")${rounds_where:+ ($rounds_where)}: other processes used up to ${worst_other}% of a CPU (steal up to ${worst_steal}%) during a repetition; its figures may be disturbed"
    fi
}

# Charts: the figures of a table as a small TSV (chart_tsv) and an SVG bar chart drawn from it
# by echo/bar_chart.py with matplotlib (draw_chart). Without matplotlib the table is still
# printed and a note says how to get the chart. Charts go to --chart-dir (default
# Benchmarks/.build/charts, not committed; Benchmarks/charts holds the committed ones).
chart_dir="$bench_dir/.build/charts"
# chart_tsv FILE TITLE CAPTION SCALE FIGURE_NAME < "label<TAB>value" lines
chart_tsv() {
    local file="$1" title="$2" caption="$3" scale="$4" figure="$5"
    mkdir -p "$(dirname "$file")"
    {
        echo "# title: $title"
        echo "# caption: $caption"
        echo "# scale: $scale"
        printf 'server\t%s\n' "$figure"
        cat
    } >"$file"
}
# draw_chart TSV SVG: draws it, or notes why not.
draw_chart() {
    local status=0
    "$python" "$echo_dir/bar_chart.py" "$1" "$2" 2>"$work_dir/chart.err" || status=$?
    case $status in
        0) log "chart: $2 (figures: $1)" ;;
        3) note "no chart drawn: matplotlib is not installed for $python (python3 -m pip install matplotlib); the figures are in $1" ;;
        *) note "no chart drawn ($2): $(tail -n 2 "$work_dir/chart.err" | tr '\n' ' ')" ;;
    esac
}
