import CLibUV

/// A raw byte buffer: the channel's pending bytes, later the bytes of one `uv_write`.
struct ByteBuffer: @unchecked Sendable {
    // @unchecked Sendable: the memory has one owner at a time — the channel's output lock
    // while pending or pooled, the loop thread while being written — and moves between them
    // only through that lock.
    var base: UnsafeMutableRawPointer
    var capacity: Int
    var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 4096)
        base = .allocate(byteCount: self.capacity, alignment: 16)
    }

    /// Appends `bytes`, growing (keeping the contents) when needed.
    @inline(__always)
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > capacity { grow(to: count + bytes.count) }
        (base + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    /// Makes room for `extra` more bytes after `count`.
    @inline(__always)
    mutating func reserve(_ extra: Int) {
        if count + extra > capacity { grow(to: count + extra) }
    }

    private mutating func grow(to needed: Int) {
        let newCapacity = max(needed, capacity * 2)
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newBase.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    func free() { base.deallocate() }
}

/// One `uv_write` in flight: the request and the buffer it points at, kept alive until the
/// write callback. Owned by one channel, reused from its pool (loop thread only).
final class WriteRequest {
    let request: UnsafeMutablePointer<uv_write_t> = .allocate(capacity: 1)
    /// The bytes; the write covers `offset..<buffer.count`.
    var buffer: ByteBuffer?
    var offset = 0
    var channel: StreamChannel?

    deinit {
        request.deallocate()
        buffer?.free()
    }

    var remaining: Int { (buffer?.count ?? 0) - offset }
}
