#include "spindle_cycles.h"

#include <stdio.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

int spindle_cycles_usable(void) {
#if defined(__x86_64__) && defined(__linux__)
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx)) return 0;
    if ((edx & (1u << 8)) == 0) return 0;  // no invariant TSC
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == NULL) return 0;
    char source[32] = {0};
    int ok = fgets(source, sizeof source, f) != NULL && strncmp(source, "tsc", 3) == 0
        && (source[3] == '\n' || source[3] == '\0');
    fclose(f);
    return ok;
#else
    return 0;
#endif
}
