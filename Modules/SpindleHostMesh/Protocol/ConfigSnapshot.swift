/// The configuration a client pushes to every host of a mesh: string keys to string values.
///
/// An agent installs a snapshot whole (it replaces the previous one) and acknowledges it with
/// its `digest`, which the client checks: an acknowledgement of some other snapshot is not an
/// installation of this one.
public struct ConfigSnapshot: Sendable, Hashable, Codable, CustomStringConvertible {
    public var values: [String: String]

    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    public subscript(key: String) -> String? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// A stable 64-bit FNV-1a digest of the sorted key/value pairs (same in every process).
    public var digest: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: String.UTF8View) {
            for b in bytes {
                h ^= UInt64(b)
                h &*= 0x0000_0100_0000_01b3
            }
            h ^= 0xff
            h &*= 0x0000_0100_0000_01b3
        }
        for key in values.keys.sorted() {
            mix(key.utf8)
            mix(values[key]!.utf8)
        }
        return h
    }

    /// Why the snapshot cannot be installed, or nil when it is well formed: keys must be
    /// non-empty and contain no `=` or NUL; values contain no NUL.
    public var problem: String? {
        for key in values.keys.sorted() {
            if key.isEmpty { return "empty key" }
            if key.contains("=") || key.contains("\0") { return "key \"\(key)\" contains \"=\" or NUL" }
            if values[key]!.contains("\0") { return "value of \"\(key)\" contains NUL" }
        }
        return nil
    }

    public var description: String {
        "{" + values.keys.sorted().map { "\($0)=\(values[$0]!)" }.joined(separator: ", ") + "}"
    }
}
