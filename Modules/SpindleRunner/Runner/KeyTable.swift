/// An open-addressing hash map from node keys to small integers: linear probing with
/// backward-shift deletion, and a fixed 64-bit mix instead of Swift's seeded hashing. The
/// ghost caches' index, where a lookup runs for every cross-shard edge of every tick.
struct KeyTable: Sendable {
    private var keys: [UInt64]
    /// -1 marks an empty slot.
    private var values: [Int32]
    private var mask: Int
    private(set) var count = 0

    init(minimumCapacity: Int = 8) {
        var size = 8
        while size < minimumCapacity * 2 { size <<= 1 }
        keys = Array(repeating: 0, count: size)
        values = Array(repeating: -1, count: size)
        mask = size - 1
    }

    @inline(__always)
    private func home(_ key: UInt64) -> Int { Int(truncatingIfNeeded: StableHash.mix(key)) & mask }

    /// The value stored for `key`.
    func find(_ key: UInt64) -> Int32? {
        var i = home(key)
        while true {
            let v = values[i]
            if v < 0 { return nil }
            if keys[i] == key { return v }
            i = (i + 1) & mask
        }
    }

    /// Stores `value` (≥ 0) for `key`, replacing what was there.
    mutating func set(_ key: UInt64, _ value: Int32) {
        precondition(value >= 0, "KeyTable values are non-negative")
        if (count + 1) * 2 > values.count { grow() }
        var i = home(key)
        while true {
            if values[i] < 0 {
                keys[i] = key
                values[i] = value
                count += 1
                return
            }
            if keys[i] == key {
                values[i] = value
                return
            }
            i = (i + 1) & mask
        }
    }

    /// Inserts `key` with `value` unless it is present.
    /// - Returns: whether it was inserted.
    mutating func insert(_ key: UInt64, _ value: Int32 = 0) -> Bool {
        if find(key) != nil { return false }
        set(key, value)
        return true
    }

    /// Removes `key`.
    /// - Returns: the value it had.
    @discardableResult
    mutating func remove(_ key: UInt64) -> Int32? {
        var i = home(key)
        while true {
            let v = values[i]
            if v < 0 { return nil }
            if keys[i] == key { break }
            i = (i + 1) & mask
        }
        let removed = values[i]
        // Backward-shift: pull later entries of the probe run into the hole.
        var hole = i
        var j = (i + 1) & mask
        while values[j] >= 0 {
            let h = home(keys[j])
            // The entry at j may move to the hole unless its home lies cyclically in (hole, j].
            let distanceToHole = (j - hole) & mask
            let distanceToHome = (j - h) & mask
            if distanceToHome >= distanceToHole {
                keys[hole] = keys[j]
                values[hole] = values[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        values[hole] = -1
        count -= 1
        return removed
    }

    mutating func removeAll() {
        guard count > 0 else { return }
        for i in values.indices { values[i] = -1 }
        count = 0
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        let size = values.count * 2
        keys = Array(repeating: 0, count: size)
        values = Array(repeating: -1, count: size)
        mask = size - 1
        count = 0
        for i in oldValues.indices where oldValues[i] >= 0 { set(oldKeys[i], oldValues[i]) }
    }
}
