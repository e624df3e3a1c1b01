#!/usr/bin/env bash
# testssl.sh against tls-echo-server with its defaults, on loopback, with the test
# certificates in Certificates/; lists every finding above "OK" that is not about the test CA
# itself (issue 13: a scanner must find nothing in our TLS defaults).
#
#   Benchmarks/testssl.sh [--keep-json FILE] [--server PATH] [-- EXTRA TESTSSL ARGUMENTS]
#
# Needs `testssl` (Debian: apt-get install testssl.sh). Builds tls-echo-server (debug) unless
# --server names a binary, starts it on 127.0.0.1 with an ephemeral port, runs a full testssl
# scan (all checks; a few minutes), stops the server and prints:
#   - the findings of severity LOW, MEDIUM, HIGH or CRITICAL, and testssl's WARN entries,
#     minus the ones about the test CA and its certificates: chain of trust, CRL / OCSP /
#     stapling / must-staple, validity period and expiry, certificate transparency, CAA,
#     the certificate's trust in the system stores;
#   - the ignored ones, on a line each, so a reader sees what was left out;
# and exits 1 if any finding remains, 0 otherwise.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
keep_json=""
server_bin=""
extra=()
while (($#)); do
    case "$1" in
        --keep-json) keep_json=$2; shift 2 ;;
        --server) server_bin=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "testssl.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done

command -v testssl >/dev/null || { echo "testssl.sh: needs testssl (apt-get install testssl.sh)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "testssl.sh: needs python3" >&2; exit 2; }

if [[ -z $server_bin ]]; then
    (cd "$root" && swift build --product tls-echo-server >&2)
    server_bin="$(cd "$root" && swift build --show-bin-path)/tls-echo-server"
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The server's defaults, but an ephemeral port and the certificates by absolute path.
"$server_bin" --port 0 --cert "$root/Certificates/server.crt" --key "$root/Certificates/server.key" \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$work/server.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; exit 1; }
    sleep 0.1
done
address=$(sed -n 's/^listening on //p' "$work/server.out")
[[ -n $address ]] || { echo "testssl.sh: the server did not start" >&2; cat "$work/server.err" >&2; exit 1; }
echo "tls-echo-server on $address (pid $server_pid)" >&2

# --nodns none: the target is an address, nothing to look up; --warnings off: no prompts.
testssl --quiet --color 0 --warnings off --nodns none --jsonfile "$work/scan.json" \
    ${extra[@]+"${extra[@]}"} "$address" >"$work/scan.txt" 2>&1 || true
[[ -s $work/scan.json ]] || { echo "testssl.sh: testssl wrote no JSON:" >&2; cat "$work/scan.txt" >&2; exit 1; }
[[ -n $keep_json ]] && cp "$work/scan.json" "$keep_json"

kill -TERM "$server_pid"
wait "$server_pid" || { echo "testssl.sh: tls-echo-server exited with $? on SIGTERM" >&2; exit 1; }
server_pid=""

python3 - "$work/scan.json" <<'EOF'
import json, re, sys

findings = json.load(open(sys.argv[1]))
if isinstance(findings, dict):   # --jsonfile-pretty layout, in case
    findings = [f for s in findings.get("scanResult", []) for v in s.values() if isinstance(v, list) for f in v]

# About the test CA and its certificates, not about our TLS stack: a private CA is not in any
# trust store, publishes no CRL or OCSP responder, logs to no CT log, has no CAA record, and
# its certificates' lifetimes are whatever make-certificates.sh chose.
ca_only = re.compile(
    r"^(cert_chain_of_trust|cert_trust|cert_crlDistributionPoints|cert_ocspURL|cert_ocspRevoked|cert_crlRevoked"
    r"|cert_revocation|OCSP_stapling|cert_mustStapleExtension|cert_validityPeriod|cert_expirationStatus"
    r"|cert_notBefore|cert_notAfter|cert_extlifeSpan|certificate_transparency|cert_certificateTransparency"
    r"|DNS_CAA|cert_caIssuers|cert_eTLS|intermediate_cert.*)(\s|$|<)")
above_ok = {"LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN"}
remaining, ignored = [], []
for f in findings:
    if f.get("severity") not in above_ok:
        continue
    line = f'{f["severity"]:8} {f["id"]}: {f.get("finding", "")}'
    (ignored if ca_only.match(f["id"]) else remaining).append(line)
for line in ignored:
    print("ignored (test CA)", line)
for line in remaining:
    print("FINDING", line)
print(f"{len(remaining)} finding(s) above OK, {len(ignored)} about the test CA ignored")
sys.exit(1 if remaining else 0)
EOF
