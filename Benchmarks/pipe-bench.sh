#!/usr/bin/env bash
# Pipe throughput: swift-asyncio's pipe-echo (Examples/PipeEcho: stdin to stdout through a
# read pipe transport and a write pipe transport) beside `cat`, on this machine, in one run.
#
#   Benchmarks/pipe-bench.sh [--bytes 1073741824] [--repeats 3] [--callgrind-bytes 268435456]
#       [--quiet-wait SEC]
#
# echo/pipe_pump.c runs each program with a pipe on its stdin and a pipe on its stdout, writes
# --bytes bytes of a pseudo-random pattern into it (64 KiB per write, from a thread) and reads
# its output (128 KiB reads), checking every byte; it reports MB/s (first write to EOF) and
# the program's CPU time (user + system, all threads, from wait4). --repeats rounds (3) go
# round the programs in turn, so that a drift of the machine falls on both alike; the table
# has the medians, and pipe-echo's figures as ratios to cat's. Before each run the script
# waits up to --quiet-wait seconds (120) for the machine to be quiet.
#
# Then, unless --callgrind-bytes is 0, each program runs twice under valgrind's callgrind,
# with no input and with --callgrind-bytes bytes (256 MiB): the difference of the
# instruction totals over the MiB moved is the user-space instructions per MiB (the kernel's
# copies are not in it). pipe-echo is copied and `strip --strip-debug`ed first (valgrind 3.19
# cannot read Swift 6's DWARF).
#
# pipe-echo is built with `swift build -c release --product pipe-echo --scratch-path
# .build-bench` in the repository; OURS_BIN_pipe_echo=path uses a given binary, NO_BUILD=1
# builds nothing. CAT=path picks the cat.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/echo/lib.sh"

bytes=1073741824 repeats=3 callgrind_bytes=268435456 quiet_wait=120
while (($#)); do
    case "$1" in
        --bytes) bytes="$2"; shift 2 ;;
        --repeats) repeats="$2"; shift 2 ;;
        --callgrind-bytes) callgrind_bytes="$2"; shift 2 ;;
        --quiet-wait) quiet_wait="$2"; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
((bytes > 0 && bytes <= 17179869184)) || { echo "--bytes must be 1 to 16 GiB" >&2; exit 2; }

build_tools || { echo "could not build the C tools" >&2; exit 1; }
cat_bin="${CAT:-$(command -v cat)}"
programs=(cat)
pipe_echo_bin=""
if pipe_echo_bin="$(build_ours_product pipe-echo)"; then
    programs=(pipe-echo cat)
else
    note "no pipe-echo binary: only cat is measured"
fi
command_of() {
    case "$1" in
        pipe-echo) cmd=("$pipe_echo_bin") ;;
        cat) cmd=("$cat_bin") ;;
    esac
}
label_of_program() {
    case "$1" in
        pipe-echo) echo "swift-asyncio pipe-echo" ;;
        cat) echo "cat ($("$cat_bin" --version 2>/dev/null | head -n1 | sed 's/^cat (\(.*\)) \(.*\)$/\1 \2/' || echo "$cat_bin"))" ;;
    esac
}

# pump BYTES TIMEOUT COMMAND...: one pipe_pump run (recorded for cleanup); prints its line.
pump() {
    local n="$1" limit="$2"
    shift 2
    bg_start "$work_dir/pump.out" "$tools_dir/pipe_pump" --bytes "$n" --timeout "$limit" -- "$@"
    if ! wait "$bg_pid"; then
        tail -n 5 "$work_dir/pump.out" >&2
        return 1
    fi
    grep '^bytes=' "$work_dir/pump.out"
}

started_at=$SECONDS
declare -A failed
for name in "${programs[@]}"; do : >"$work_dir/reps.$name"; failed[$name]=0; done
pump_timeout=$((bytes / 10000000 + 60))   # 10 MB/s at the least
for ((r = 1; r <= repeats; r++)); do
    log "repetition $r of $repeats"
    for name in "${programs[@]}"; do
        ((failed[$name])) && continue
        ((quiet_wait > 0)) && wait_quiet
        command_of "$name"
        if ! line="$(pump "$bytes" "$pump_timeout" "${cmd[@]}")"; then
            failed[$name]=1
            note "$(label_of_program "$name"): $(grep FAIL "$work_dir/pump.out" | head -n1)"
            continue
        fi
        log "  $name: $line"
        echo "$(result_field "$line" mb_per_s) $(result_field "$line" child_cpu_us) $(result_field "$line" child_user_us) $(result_field "$line" child_sys_us)" \
            >>"$work_dir/reps.$name"
    done
done
throughput_elapsed=$((SECONDS - started_at))

# Instructions per MiB under callgrind: (loaded - empty) / MiB.
callgrind_total() {  # callgrind_total BYTES NAME KIND COMMAND...: prints the instruction total
    local n="$1" name="$2" kind="$3"
    shift 3
    local out="$work_dir/callgrind.$name.$kind"
    pump "$n" $((n / 1000000 + 300)) valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null \
        || return 1
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}
declare -A instructions
if ((callgrind_bytes > 0)) && command -v valgrind >/dev/null; then
    export SWIFT_BACKTRACE=enable=no
    for name in "${programs[@]}"; do
        command_of "$name"
        if [[ "$name" == pipe-echo ]]; then
            cp "${cmd[0]}" "$work_dir/pipe-echo-stripped" && strip --strip-debug "$work_dir/pipe-echo-stripped"
            cmd[0]="$work_dir/pipe-echo-stripped"
        fi
        log "$name: callgrind, empty input then $callgrind_bytes bytes ..."
        if idle="$(callgrind_total 0 "$name" idle "${cmd[@]}")" \
            && loaded="$(callgrind_total "$callgrind_bytes" "$name" loaded "${cmd[@]}")"; then
            instructions[$name]="$(awk -v l="$loaded" -v i="$idle" -v b="$callgrind_bytes" 'BEGIN { printf "%.0f", (l - i) / (b / 1048576) }')"
        else
            note "$(label_of_program "$name"): the callgrind run failed"
        fi
    done
elif ((callgrind_bytes > 0)); then
    note "valgrind is not installed: no instructions per MiB"
fi
elapsed=$((SECONDS - started_at))

echo
machine_line
echo "Load: $bytes bytes through each program (pipe in, pipe out; 64 KiB writes, 128 KiB reads, every byte checked), median of $repeats"
echo
echo "| program | MB/s | CPU ms/GiB | user ms/GiB | system ms/GiB | MB/s vs cat | CPU vs cat | instructions/MiB | MB/s min–max |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
declare -A mbps cpu
for name in "${programs[@]}"; do
    reps="$work_dir/reps.$name"
    if ((failed[$name])) || [[ ! -s "$reps" ]]; then
        echo "| $(label_of_program "$name") | failed | | | | | | | |"
        continue
    fi
    mbps[$name]="$(awk '{ print $1 }' "$reps" | median)"
    cpu[$name]="$(awk '{ print $2 }' "$reps" | median)"
done
for name in "${programs[@]}"; do
    ((failed[$name])) && continue
    reps="$work_dir/reps.$name"
    [[ -s "$reps" ]] || continue
    user="$(awk '{ print $3 }' "$reps" | median)"
    sys="$(awk '{ print $4 }' "$reps" | median)"
    awk -v l="$(label_of_program "$name")" -v m="${mbps[$name]}" -v c="${cpu[$name]}" -v u="$user" -v s="$sys" \
        -v gib="$(awk -v b="$bytes" 'BEGIN { print b / 1073741824 }')" \
        -v mc="${mbps[cat]:-}" -v cc="${cpu[cat]:-}" -v ins="${instructions[$name]:-n/a}" \
        -v lo="$(awk '{ print $1 }' "$reps" | sort -g | head -n1)" -v hi="$(awk '{ print $1 }' "$reps" | sort -g | tail -n1)" \
        'function ratio(a, b) { return (b == "" || b == 0) ? "n/a" : sprintf("%.2f", a / b) }
         BEGIN { printf "| %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %s | %.0f–%.0f |\n",
                 l, m, c / 1000 / gib, u / 1000 / gib, s / 1000 / gib, ratio(m, mc), ratio(c, cc), ins, lo, hi }'
done
echo
echo "MB/s: 10^6 bytes per second through the program, median of the repetitions. CPU ms/GiB:"
echo "the program's user + system CPU time per GiB moved (the kernel's copies into and out of"
echo "the pipes are most of it). vs cat: ratios to cat's figures (MB/s above 1: faster; CPU"
echo "above 1: costs more). instructions/MiB: user-space instructions per MiB under callgrind"
echo "($callgrind_bytes bytes minus an empty run). Throughput runs took ${throughput_elapsed} s; all ${elapsed} s."
print_notes
