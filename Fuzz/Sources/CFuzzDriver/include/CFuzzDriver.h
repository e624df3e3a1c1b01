// libFuzzer's driver, called from each target's entry point: SwiftPM links every executable
// with `main` defined as `<Module>_main`, so the targets cannot use libFuzzer's own `main`.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
