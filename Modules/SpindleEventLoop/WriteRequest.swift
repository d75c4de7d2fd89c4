import CLibUV

/// A growable byte buffer that becomes one `uv_write`: producers append to it (under the
/// channel's lock), the loop hands it to libuv and keeps it alive until the write callback.
/// Owned by one channel and reused from its small pool.
final class WriteRequest: @unchecked Sendable {
    // @unchecked Sendable: one party at a time touches it — producers under the channel's
    // output lock while it is the pending buffer or in the pool, the loop thread alone after
    // taking it out under that lock and until it is returned to the pool.
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

    /// Appends `bytes` at `count`, growing the buffer (keeping its contents) when needed.
    @inline(__always)
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > capacity { grow(to: count + bytes.count) }
        (buffer + count).copyMemory(from: base, byteCount: bytes.count)
        count += bytes.count
    }

    private func grow(to needed: Int) {
        let newCapacity = max(needed, capacity * 2)
        let newBuffer = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newBuffer.copyMemory(from: buffer, byteCount: count)
        buffer.deallocate()
        buffer = newBuffer
        capacity = newCapacity
    }
}
