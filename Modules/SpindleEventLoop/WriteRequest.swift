import CLibUV

/// One `uv_write` in flight: the request and the bytes it points at, kept alive until the
/// write callback. Owned by one channel and reused from its small pool (loop thread only).
final class WriteRequest {
    let request: UnsafeMutablePointer<uv_write_t>
    private(set) var buffer: UnsafeMutableRawPointer
    private(set) var capacity: Int
    /// Bytes in `buffer`; the write covers `offset..<count`.
    var count = 0
    var offset = 0
    var channel: StreamChannel?

    init(capacity: Int) {
        request = .allocate(capacity: 1)
        self.capacity = max(capacity, 4096)
        buffer = .allocate(byteCount: self.capacity, alignment: 16)
    }

    deinit {
        request.deallocate()
        buffer.deallocate()
    }

    /// Makes room for `n` bytes (discarding the contents).
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        buffer.deallocate()
        capacity = max(n, capacity * 2)
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }

    /// Appends `bytes` at `count`; the caller reserved room.
    @inline(__always)
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        (buffer + count).copyMemory(from: base, byteCount: bytes.count)
        count += bytes.count
    }
}
