/// Names of types as they travel in calls (generic substitutions) and replies (thrown
/// `Codable` errors): the runtime's mangled names, read back with `_typeByName`.
///
/// A name from the wire is checked before the runtime sees it: at most 1024 bytes of
/// letters, digits, `_` and `$`. That keeps out symbolic references (control bytes followed
/// by relative pointers, which the runtime would follow) and other bytes no mangled type name
/// printed by `_mangledTypeName` contains.
enum TypeNames {
    static let maximumLength = 1024

    static func name(of type: Any.Type) -> String? {
        _mangledTypeName(type)
    }

    /// The type a checked name denotes, or nil when the name is refused or unknown here.
    static func type(named name: String) -> Any.Type? {
        guard isAcceptable(name) else { return nil }
        return _typeByName(name)
    }

    static func isAcceptable(_ name: String) -> Bool {
        let bytes = name.utf8
        guard !bytes.isEmpty, bytes.count <= maximumLength else { return false }
        return bytes.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: "_") || c == UInt8(ascii: "$")
        }
    }
}
