/// A reliable link's unacknowledged messages, kept as encoded frames back to back.
///
/// Keeping the frames instead of the envelopes means a send costs one encode into this log
/// and an acknowledgement only moves the start forward: no reference counting of payloads
/// shared with the application, no per-message deallocation on the thread that handles acks.
/// Frames are addressed by absolute byte positions that only grow; the log compacts its
/// storage as the start moves. A value type (copy-on-write).
///
/// ```
///  storage:  [ dropped … | live frames …………………… | free ]
///              base        start                  end
/// ```
struct FrameLog: Sendable {
    /// Absolute position of the first live byte.
    private(set) var start = 0
    /// Absolute position just past the last frame.
    private(set) var end = 0
    /// Absolute position of `storage`'s first byte.
    private var base = 0
    private var storage: Storage

    init() { storage = Storage(capacity: 0) }

    /// Appends the frame of `message` numbered `sequence` (with the `sequenced` flag) and
    /// returns the absolute position where it ends.
    ///
    /// The storage is made ready before the envelope is read: a borrow of it held across that
    /// mutation would make the compiler copy it (a retain and a release of its payload per
    /// message on the sending thread).
    mutating func append(_ message: UnsafePointer<Envelope>, sequence: UInt64) -> Int {
        let bound = FrameEncoder.frameSizeBound(of: message.pointee)
        let destination = reserve(bound)
        let length = FrameEncoder.encodeUnchecked(message.pointee, sequence: sequence, addingFlags: .sequenced,
                                                  to: destination)
        precondition(length >= 0 && length <= bound, "FrameLog: wrote \(length) of at most \(bound) bytes")
        end += length
        return end
    }

    /// Forgets everything before absolute position `position` (acknowledged frames).
    mutating func drop(upTo position: Int) {
        precondition(position >= start && position <= end, "FrameLog: drop to \(position) outside \(start)...\(end)")
        start = position
        if start == end {
            // Empty: write from the front again, no copy needed; after a burst, give back
            // what a long queue made the storage grow to.
            base = start
            if storage.capacity > Self.retainedCapacity { storage = Storage(capacity: 0) }
        }
    }

    /// Calls `body` with the bytes from absolute `from` to `to` (valid only during the call).
    func withBytes<R>(from: Int, to: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        precondition(from >= start && from <= to && to <= end, "FrameLog: bytes \(from)..<\(to) outside \(start)...\(end)")
        return try body(UnsafeRawBufferPointer(start: storage.bytes + (from - base), count: to - from))
    }

    /// Decodes the frames from absolute `from` to `to` (frames this log was given).
    func envelopes(from: Int, to: Int) -> [Envelope] {
        withBytes(from: from, to: to) { bytes in
            do {
                return try FrameDecoder.wholeFrames(bytes)
            } catch {
                // Only frames written by FrameEncoder are appended: failing here is a bug.
                preconditionFailure("FrameLog holds a frame it cannot decode: \(error)")
            }
        }
    }

    /// Storage above this size is released once the log empties.
    static let retainedCapacity = 4 << 20

    /// Makes room for `count` more bytes at the end, owning the storage uniquely; returns
    /// where they go.
    private mutating func reserve(_ count: Int) -> UnsafeMutableRawPointer {
        let live = end - start
        let unique = isKnownUniquelyReferenced(&storage)
        if unique && (end - base) + count <= storage.capacity { return storage.bytes + (end - base) }
        if unique && live + count <= storage.capacity && start - base >= storage.capacity / 2 {
            // At least half the storage is dropped frames: slide the live ones to the front.
            (storage.bytes).copyMemory(from: storage.bytes + (start - base), byteCount: live)
            base = start
            return storage.bytes + (end - base)
        }
        let grown = Storage(capacity: Swift.max(64 << 10, (live + count) * 2))
        grown.bytes.copyMemory(from: storage.bytes + (start - base), byteCount: live)
        storage = grown
        base = start
        return storage.bytes + (end - base)
    }

    /// The bytes. Shared only between copies of a log, which never write to shared storage
    /// (`reserve` copies first).
    private final class Storage: @unchecked Sendable {
        // @unchecked Sendable: the bytes are written only through a uniquely referenced
        // Storage (FrameLog.reserve checks isKnownUniquelyReferenced before every append);
        // shared storage is only read.
        let bytes: UnsafeMutableRawPointer
        let capacity: Int

        init(capacity: Int) {
            self.capacity = capacity
            bytes = .allocate(byteCount: Swift.max(capacity, 1), alignment: 16)
        }

        deinit { bytes.deallocate() }
    }
}
