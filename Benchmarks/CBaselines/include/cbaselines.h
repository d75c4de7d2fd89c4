#ifndef SPINDLE_CBASELINES_H
#define SPINDLE_CBASELINES_H
// C baselines that spindle-bench runs side by side with Spindle (our own code).
#include <stdint.h>
#include "cbaselines_net.h"
#include "cbaselines_forkjoin.h"
#endif
