#ifndef SPINDLE_SUPPORT_H
#define SPINDLE_SUPPORT_H

/// Names the calling thread (at most 15 bytes are kept), opening no descriptor.
/// Returns 0, or an errno value.
int spindle_name_current_thread(const char *name);

#endif
