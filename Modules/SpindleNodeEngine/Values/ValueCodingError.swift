/// A user type could not be converted to or from a `Value`: says where in the type (the
/// coding path, like `order.items[2].price`) and what was wrong.
public struct ValueCodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The coding path to the failing field (`""` for the top level).
    public var path: String
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    init(_ codingPath: [any CodingKey], _ problem: String) {
        self.init(path: ValueCodingError.render(codingPath), problem: problem)
    }

    public var description: String {
        path.isEmpty ? "value coding: \(problem)" : "value coding at `\(path)`: \(problem)"
    }

    /// `a.b[2].c` from a coding path.
    static func render(_ codingPath: [any CodingKey]) -> String {
        var out = ""
        for key in codingPath {
            if let i = key.intValue, key.stringValue == "Index \(i)" || key.stringValue == "\(i)" {
                out += "[\(i)]"
            } else {
                if !out.isEmpty { out += "." }
                out += key.stringValue
            }
        }
        return out
    }

    /// Converts an error a `Codable` implementation threw into a `ValueCodingError`.
    static func from(_ error: any Error, at codingPath: [any CodingKey]) -> ValueCodingError {
        if let e = error as? ValueCodingError { return e }
        if let e = error as? DecodingError {
            switch e {
            case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
                return ValueCodingError(c.codingPath, c.debugDescription)
            case .keyNotFound(let key, let c):
                return ValueCodingError(c.codingPath + [key], "missing field: \(c.debugDescription)")
            @unknown default:
                return ValueCodingError(codingPath, "\(e)")
            }
        }
        if let e = error as? EncodingError {
            switch e {
            case .invalidValue(_, let c): return ValueCodingError(c.codingPath, c.debugDescription)
            @unknown default: return ValueCodingError(codingPath, "\(e)")
            }
        }
        return ValueCodingError(codingPath, "\(error)")
    }
}

/// An index in an unkeyed container, printed as `[i]` in paths.
struct IndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { return nil }
}

/// A field name, for `superEncoder` / `superDecoder` and dictionaries.
struct FieldKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}
