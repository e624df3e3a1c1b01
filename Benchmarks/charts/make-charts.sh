#!/usr/bin/env bash
# Redraws every committed chart (Benchmarks/charts/*.svg) from its figures (*.tsv beside it)
# with Benchmarks/echo/bar_chart.py; needs matplotlib (python3 -m pip install matplotlib).
#
#   Benchmarks/charts/make-charts.sh
#
# The TSVs hold the figures of the README tables the charts stand beside, copied by hand
# from those tables (no benchmark runs here). After a new run of run-echo-bench.sh or
# echo-callgrind.sh, which write their own TSV and SVG into Benchmarks/.build/charts, update
# the table and the TSV here together (or copy that run's TSV over, keeping a caption that
# says where the figures come from), then run this.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
status=0
for tsv in "$here"/*.tsv; do
    "$python" "$here/../echo/bar_chart.py" "$tsv" "${tsv%.tsv}.svg" || status=$?
done
exit $status
