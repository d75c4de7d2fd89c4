import SpindleEventLoop

/// The byte layout of an encrypted record (docs/wire-protocol.md, "Records"):
///
/// ```
/// +----------------+------------------------------------------+-----------+
/// | length u16 LE  | AES-256-GCM ciphertext (length − 16)     | tag (16)  |
/// +----------------+------------------------------------------+-----------+
/// ```
///
/// Each direction keys its own cipher from the handshake and numbers its records 0, 1, 2…;
/// the number is the AEAD nonce and is never sent, so a record that is replayed, reordered
/// or dropped fails to authenticate where it lands. Records carry up to 16 KiB of the frame
/// stream each, cut anywhere: the frame decoder sees the same plaintext stream as without
/// encryption.
enum RecordLayout {
    /// Bytes of the length field.
    static let headerSize = 2
    /// Most plaintext bytes in one record.
    static let maximumPlaintext = 16 << 10
    /// Bytes the AEAD adds.
    static let tagSize = NoiseCipherState.tagSize
    /// The largest `length` a record may announce.
    static let maximumLength = maximumPlaintext + tagSize

    /// The most bytes `count` plaintext bytes become.
    static func sealedSize(ofPlaintext count: Int) -> Int {
        let records = (count + maximumPlaintext - 1) / maximumPlaintext
        return count + records * (headerSize + tagSize)
    }
}

/// Seals what a connection writes into records: the `StreamOutboundTransform` of an encrypted
/// connection, run on its loop thread once per flush.
final class RecordSealer: StreamOutboundTransform {
    private var cipher: NoiseCipherState

    init(cipher: NoiseCipherState) { self.cipher = cipher }

    func maximumOutputSize(forInputCount count: Int) -> Int { RecordLayout.sealedSize(ofPlaintext: count) }

    func transform(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(StreamTransformError) -> Int {
        var read = 0, written = 0
        while read < input.count {
            let n = min(RecordLayout.maximumPlaintext, input.count - read)
            let length = UInt16(n + RecordLayout.tagSize)
            output.storeBytes(of: length.littleEndian, toByteOffset: written, as: UInt16.self)
            do {
                try cipher.seal(UnsafeRawBufferPointer(rebasing: input[read..<(read + n)]),
                                into: output + written + RecordLayout.headerSize)
            } catch {
                throw StreamTransformError("cannot seal record: \(error)")
            }
            read += n
            written += RecordLayout.headerSize + Int(length)
        }
        return written
    }
}

/// Opens the records a connection receives, incrementally: bytes split anywhere in, the
/// plaintext of every complete record out. Loop-confined, like the connection that owns it.
final class RecordOpener {
    private var cipher: NoiseCipherState
    /// The start of a record not yet complete (header included).
    private var partial: [UInt8] = []
    /// Offset in the peer's byte stream of the next record's first byte.
    private(set) var streamOffset: Int
    /// Plaintext of the records of one read, handed over in one piece.
    private let plaintext: UnsafeMutableRawPointer
    private let plaintextCapacity: Int
    /// Bytes of `plaintext` filled and not yet handed over.
    private var filled = 0

    /// - Parameter streamOffset: offset of the first record in the peer's byte stream (the
    ///   handshake's length), so errors name positions a packet capture shows.
    init(cipher: NoiseCipherState, streamOffset: Int, batchBytes: Int = 64 << 10) {
        self.cipher = cipher
        self.streamOffset = streamOffset
        plaintextCapacity = max(batchBytes, RecordLayout.maximumPlaintext)
        plaintext = .allocate(byteCount: plaintextCapacity, alignment: 16)
    }

    deinit { plaintext.deallocate() }

    /// Whether bytes of an incomplete record are held (at the end of the stream: truncation).
    var holdsPartialRecord: Bool { !partial.isEmpty }

    /// The error for a stream that ended inside a record.
    var truncation: RecordError? {
        partial.isEmpty ? nil : RecordError(.truncated(have: partial.count), offset: streamOffset)
    }

    /// Opens every complete record in `bytes` (after any partial one held from earlier) and
    /// hands their plaintext to `deliver` in pieces of up to `batchBytes`; `deliver` returns
    /// false to stop (the connection is closing).
    /// - Throws: `RecordError` naming the first bad record; nothing after it is delivered.
    func open(_ bytes: UnsafeRawBufferPointer, deliver: (UnsafeRawBufferPointer) -> Bool) throws(RecordError) {
        filled = 0
        do {
            try openRecords(bytes, deliver: deliver)
        } catch {
            // The records before the bad one authenticated: they are delivered, then the error.
            _ = hand(deliver)
            throw error
        }
        _ = hand(deliver)
    }

    /// Hands the plaintext gathered so far to `deliver`; returns what it returned.
    private func hand(_ deliver: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        guard filled > 0 else { return true }
        let n = filled
        filled = 0
        return deliver(UnsafeRawBufferPointer(start: plaintext, count: n))
    }

    private func openRecords(_ bytes: UnsafeRawBufferPointer, deliver: (UnsafeRawBufferPointer) -> Bool) throws(RecordError) {
        var input = bytes
        if !partial.isEmpty {
            // Complete the held record from the front of this read.
            let need = try completeHeld(from: &input)
            guard need == 0 else { return }
            let opened = partial.withUnsafeBytes { raw in
                Result { () throws(RecordError) -> Int in
                    try openRecord(UnsafeRawBufferPointer(rebasing: raw[RecordLayout.headerSize...]),
                                   into: plaintext + filled)
                }
            }
            filled += try opened.get()
            partial.removeAll(keepingCapacity: true)
        }
        while input.count >= RecordLayout.headerSize {
            let length = try recordLength(input)
            let total = RecordLayout.headerSize + length
            guard input.count >= total else { break }
            if filled + length - RecordLayout.tagSize > plaintextCapacity, !hand(deliver) { return }
            filled += try openRecord(UnsafeRawBufferPointer(rebasing: input[RecordLayout.headerSize..<total]),
                                     into: plaintext + filled)
            input = UnsafeRawBufferPointer(rebasing: input[total...])
        }
        if !input.isEmpty {
            if input.count >= RecordLayout.headerSize { _ = try recordLength(input) }
            partial.append(contentsOf: input)
        }
    }

    /// Moves bytes from `input` into `partial` until the held record is complete; returns how
    /// many are still missing (0 when complete).
    private func completeHeld(from input: inout UnsafeRawBufferPointer) throws(RecordError) -> Int {
        if partial.count < RecordLayout.headerSize {
            let take = min(RecordLayout.headerSize - partial.count, input.count)
            partial.append(contentsOf: input[..<take])
            input = UnsafeRawBufferPointer(rebasing: input[take...])
            if partial.count < RecordLayout.headerSize { return RecordLayout.headerSize - partial.count }
        }
        let length = try partial.withUnsafeBytes { raw in
            Result { () throws(RecordError) -> Int in try recordLength(raw) }
        }.get()
        let missing = RecordLayout.headerSize + length - partial.count
        let take = min(missing, input.count)
        partial.append(contentsOf: input[..<take])
        input = UnsafeRawBufferPointer(rebasing: input[take...])
        return missing - take
    }

    /// The length field of the record at the start of `bytes` (at least 2 bytes), checked.
    private func recordLength(_ bytes: UnsafeRawBufferPointer) throws(RecordError) -> Int {
        let length = Int(UInt16(littleEndian: bytes.loadUnaligned(as: UInt16.self)))
        if length > RecordLayout.maximumLength {
            throw RecordError(.oversized(length: length), offset: streamOffset)
        }
        if length <= RecordLayout.tagSize {
            throw RecordError(.tooShort(length: length), offset: streamOffset)
        }
        return length
    }

    /// Opens one record's sealed bytes into `output`; advances the stream offset.
    private func openRecord(_ sealed: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(RecordError) -> Int {
        do {
            let n = try cipher.open(sealed, into: output)
            streamOffset += RecordLayout.headerSize + sealed.count
            return n
        } catch .nonceExhausted {
            throw RecordError(.nonceExhausted, offset: streamOffset)
        } catch {
            throw RecordError(.notAuthenticated(index: cipher.nonce), offset: streamOffset)
        }
    }
}

/// A record that cannot be accepted: the connection closes with it.
struct RecordError: Error, Sendable, Equatable, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        /// The record does not authenticate as record number `index` of this session:
        /// tampered with, replayed, reordered, or one before it was dropped.
        case notAuthenticated(index: UInt64)
        /// The record announces more than `RecordLayout.maximumLength` bytes.
        case oversized(length: Int)
        /// The record announces no room for any plaintext.
        case tooShort(length: Int)
        /// The stream ended after `have` bytes of a record.
        case truncated(have: Int)
        /// The session's 2⁶⁴−1 records have been received.
        case nonceExhausted
    }

    var kind: Kind
    /// Offset of the record's first byte in the peer's byte stream.
    var offset: Int

    init(_ kind: Kind, offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    var description: String {
        let at = "record at stream offset \(offset)"
        switch kind {
        case .notAuthenticated(let index):
            return "\(at) does not authenticate as record \(index) of this session (tampered with, replayed, reordered, or an earlier record is missing)"
        case .oversized(let length):
            return "\(at) announces \(length) bytes, more than the \(RecordLayout.maximumLength) allowed"
        case .tooShort(let length):
            return "\(at) announces \(length) bytes, too few to hold any data (the tag alone is \(RecordLayout.tagSize))"
        case .truncated(let have):
            return "\(at) was cut short: the stream ended after \(have) of its bytes"
        case .nonceExhausted:
            return "\(at): the session's record numbers are exhausted"
        }
    }
}
