// libFuzzer's driver, for spindle-fuzz built with -sanitize=fuzzer: SwiftPM links an
// executable's `main` to its own entry point, so spindle-fuzz starts libFuzzer itself.
// Declared only: a build without libFuzzer never references it.
#ifndef C_SPINDLE_FUZZ_H
#define C_SPINDLE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
