#!/usr/bin/env bash
# Makes the test CA, server and client certificates used by the tests and the TLS examples.
# FOR TESTS AND EXAMPLES ONLY: the private keys are committed and public.
#
#   Certificates/make-certificates.sh      # rewrites ca.*, server.*, client.* in this folder
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
days=3650
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The CA: EC P-256, self-signed, may sign certificates (and nothing below it may).
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -out ca.crt \
    -subj "/O=swift-asyncio tests/CN=swift-asyncio test CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"

# The server: localhost, 127.0.0.1 and ::1.
openssl ecparam -name prime256v1 -genkey -noout -out server.key
openssl req -new -key server.key -out "$work/server.csr" -subj "/O=swift-asyncio tests/CN=localhost"
cat > "$work/server.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in "$work/server.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -CAserial "$work/ca.srl" -days "$days" -sha256 -extfile "$work/server.ext" -out server.crt

# A client, for mutual TLS.
openssl ecparam -name prime256v1 -genkey -noout -out client.key
openssl req -new -key client.key -out "$work/client.csr" -subj "/O=swift-asyncio tests/CN=swift-asyncio test client"
cat > "$work/client.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
openssl x509 -req -in "$work/client.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -CAserial "$work/ca.srl" -days "$days" -sha256 -extfile "$work/client.ext" -out client.crt

openssl verify -CAfile ca.crt server.crt client.crt
