#ifndef SPINDLE_CBASELINES_NET_H
#define SPINDLE_CBASELINES_NET_H
// Loopback TCP baselines over raw libuv, for the `transport` suite of spindle-bench.
//
// Both run a server and a client in this process, each on its own thread with its own
// uv_loop_t, connected over 127.0.0.1 on an ephemeral port with TCP_NODELAY set. A frame is
// a 4-byte big-endian length followed by that many payload bytes.
#include <stdint.h>

/// Ping-pong: the client sends one frame of `payload_size` bytes, the server echoes it, and the
/// client sends the next when the echo is complete, `round_trips` times.
/// Returns the nanoseconds from the first send to the last echo, or a negative libuv error.
int64_t cbaselines_net_pingpong(uint64_t round_trips, uint32_t payload_size);

/// As `cbaselines_net_pingpong`, also writing each round trip's nanoseconds (send of the ping
/// to arrival of its echo) to `latencies_ns[0..<round_trips]`.
int64_t cbaselines_net_pingpong_latencies(uint64_t round_trips, uint32_t payload_size, uint64_t *latencies_ns);

/// One-way pump: the client writes `frames` frames of `payload_size` bytes, encoding each into
/// a batch buffer and writing batches (coalesced writes, at most two in flight); the server
/// counts frames by parsing the length prefixes.
/// Returns the nanoseconds from the first write until the server has counted every frame,
/// or a negative libuv error.
int64_t cbaselines_net_pump(uint64_t frames, uint32_t payload_size);

#endif
