// Whether this machine counts user-space instructions with perf_event_open.
#ifndef C_PERF_PROBE_H
#define C_PERF_PROBE_H

/// 1 if a hardware-instructions counter (user space only, as package-benchmark opens it) can
/// be opened for this thread, 0 if not (many VMs have no PMU: `perf stat -e instructions true`
/// says "not supported" there).
int cperfprobe_instructions_available(void);

#endif
