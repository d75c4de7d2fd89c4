#ifndef SPINDLE_CLIBUV_SHIM_H
#define SPINDLE_CLIBUV_SHIM_H
// libuv as seen from Swift. Debian's libuv1-dev (1.44) provides uv.h and libuv.pc.
#include <uv.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#endif
