// The C side of SpindleSupport: what Swift cannot reach through the system modules.
#define _GNU_SOURCE
#include <pthread.h>
#include <string.h>
#include "spindle_support.h"

int spindle_name_current_thread(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = '\0';
#if defined(__APPLE__)
    return pthread_setname_np(truncated);
#else
    return pthread_setname_np(pthread_self(), truncated);
#endif
}
