#!/usr/bin/env bash
# Builds the DocC documentation of the library modules (AsyncIO, AsyncIOServiceLifecycle) with
# warnings as errors, then checks that every public symbol declared in Sources/ has a doc
# comment of its own (.ci/doc-coverage.py). Fails on either.
#
#   bash .ci/docs.sh                       # into .build (reuses its build)
#   DOCS_SCRATCH_PATH=.build-docs bash .ci/docs.sh
#
# ASYNCIO_DOCS=1 makes Package.swift add the swift-docc-plugin dependency (see its last block).
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=${DOCS_SCRATCH_PATH:-.build}
modules=(AsyncIO AsyncIOServiceLifecycle AsyncIOMetrics)
target_args=()
for module in "${modules[@]}"; do target_args+=(--target "$module"); done

start=$(date +%s)
# --enable-all-traits: the integrations are behind package traits that are off by default.
ASYNCIO_DOCS=1 swift package --scratch-path "$scratch" --enable-all-traits generate-documentation \
    "${target_args[@]}" --warnings-as-errors
echo "docs: generated in $(( $(date +%s) - start )) s"

python3 .ci/doc-coverage.py "$scratch" "${modules[@]}"
