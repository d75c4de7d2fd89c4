/// The input values an op fires with, by port index (its order in the op's signature).
///
/// Up to four inputs are stored inline, so firing an op does not allocate.
public struct OpInputs: Sendable {
    @usableFromInline var v0: Value?
    @usableFromInline var v1: Value?
    @usableFromInline var v2: Value?
    @usableFromInline var v3: Value?
    @usableFromInline var more: [Value?]
    /// Number of input ports.
    public let count: Int

    @inlinable
    init(count: Int) {
        self.count = count
        more = []
        if count > 4 { more = Array(repeating: nil, count: count - 4) }
    }

    /// A single input (port 0).
    public init(_ value: Value) {
        self.init(count: 1)
        v0 = value
    }

    /// The value at port `index`, or nil when the port was not filled (optional or any-of).
    @inlinable
    public subscript(index: Int) -> Value? {
        get {
            switch index {
            case 0: return v0
            case 1: return v1
            case 2: return v2
            case 3: return v3
            default: return index < count ? more[index - 4] : nil
            }
        }
        set {
            switch index {
            case 0: v0 = newValue
            case 1: v1 = newValue
            case 2: v2 = newValue
            case 3: v3 = newValue
            default: more[index - 4] = newValue
            }
        }
    }

    /// The first filled input (what any-of ops read).
    public var first: Value? {
        for i in 0..<count { if let v = self[i] { return v } }
        return nil
    }
}

/// The output values of an op, by port index (its order in the op's signature); a port left
/// nil writes nothing. Up to four outputs are stored inline.
public struct OpOutputs: Sendable {
    @usableFromInline var v0: Value?
    @usableFromInline var v1: Value?
    @usableFromInline var v2: Value?
    @usableFromInline var v3: Value?
    @usableFromInline var more: [Value?]
    @usableFromInline var _count: Int
    /// Highest port index set plus one.
    public var count: Int { _count }

    /// No outputs (absorb).
    @inlinable
    public init() {
        _count = 0
        more = []
    }

    /// One output on port 0.
    @inlinable
    public init(_ value: Value) {
        _count = 1
        more = []
        v0 = value
    }

    /// Outputs on ports 0, 1, … in order.
    public init(_ values: [Value]) {
        self.init()
        for (i, v) in values.enumerated() { self[i] = v }
    }

    public var isEmpty: Bool { count == 0 }

    @inlinable
    public subscript(index: Int) -> Value? {
        get {
            switch index {
            case 0: return v0
            case 1: return v1
            case 2: return v2
            case 3: return v3
            default: return index - 4 < more.count ? more[index - 4] : nil
            }
        }
        set {
            switch index {
            case 0: v0 = newValue
            case 1: v1 = newValue
            case 2: v2 = newValue
            case 3: v3 = newValue
            default:
                while more.count <= index - 4 { more.append(nil) }
                more[index - 4] = newValue
            }
            if newValue != nil, index >= _count { _count = index + 1 }
        }
    }

    /// Total wire size of the values (for result-size caps).
    var byteCount: Int {
        var n = 0
        for i in 0..<count { n += self[i]?.byteCount ?? 0 }
        return n
    }
}
