#!/usr/bin/env bash
# UDP echo throughput, latency and server CPU per datagram: swift-asyncio's udp-echo-server
# beside a C epoll baseline (echo/c_udp_echo_server.c), SwiftNIO (DatagramBootstrap), and
# asyncio's and uvloop's DatagramProtocol, on loopback, on this machine, in one run.
#
#   Benchmarks/run-udp-bench.sh [--duration 5 | --messages M] [--repeats 5] [--connections 10]
#       [--sizes 1024] [--pipeline 1] [--warmup 1] [--servers "ours c nio asyncio uvloop"]
#       [--quiet-wait SEC]
#
# This is run-echo-bench.sh --udp (see its --help): every server pinned to CPU 0 and
# echo/udp_loadgen.c to CPU 1; --connections client sockets (10), each a connected UDP socket
# sending --size-byte datagrams with --pipeline (1) in flight; --repeats rounds (5) of
# --duration seconds (5) going round the servers; medians, with req/s and server CPU per
# datagram as ratios to the C baseline. Every echoed datagram is checked byte for byte and
# for its length; a datagram not echoed within 1 s fails the server's run.
set -euo pipefail
case "${1:-}" in -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run-echo-bench.sh" --udp "$@"
