#!/usr/bin/env bash
# Chaos soak: tcp-, tls-, udp-, unix-echo-server and chat-server, built in release mode, under
# normal clients that verify every byte and hostile ones (resets mid-write, half-closes,
# slowloris, clients that never read, TLS garbage / stalled handshakes / records after
# close_notify, fd bursts past the servers' lowered `ulimit -n`) for a set time.
#
#   Benchmarks/chaos-soak.sh [--minutes 10] [--nofile 256] [--seed N] [--servers tcp,tls,udp,unix,chat]
#                            [--loops 2] [--slowloris 2] [--burst-every S] [--settle 3] [--trim]
#
# Prints a table (bytes verified, mismatches/losses, fds and RSS of each server at start, peak
# and end, unexpected server log lines) and exits 1 if any check fails; see the docstring of
# Benchmarks/chaos_soak.py for the clients and the checks. Not part of `swift test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi
for product in tcp-echo-server tls-echo-server udp-echo-server unix-echo-server chat-server; do
    swift build -c release --product "$product" >/dev/null
done
exec python3 Benchmarks/chaos_soak.py --bin-dir "$(swift build -c release --show-bin-path)" "$@"
