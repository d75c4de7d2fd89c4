import SpindleKernel

/// Where each peer can be reached, kept while someone holds a reference to it; also maps
/// names that programs use to node ids.
struct AddressBook: Sendable {
    struct Entry {
        var addresses: [Address]
        var references: Int
    }

    private var entries: [NodeID: Entry] = [:]
    private var names: [String: NodeID] = [:]

    init() {}

    /// Adds a reference to `peer`, merging `addresses` into the ones known.
    mutating func retain(_ peer: NodeID, addresses: [Address] = []) {
        var e = entries[peer] ?? Entry(addresses: [], references: 0)
        for a in addresses where !e.addresses.contains(a) { e.addresses.append(a) }
        e.references += 1
        entries[peer] = e
    }

    /// Drops a reference; the entry is forgotten when the last reference goes.
    /// - Returns: the references left.
    @discardableResult
    mutating func release(_ peer: NodeID) -> Int {
        guard var e = entries[peer] else { return 0 }
        e.references -= 1
        if e.references <= 0 {
            entries[peer] = nil
            return 0
        }
        entries[peer] = e
        return e.references
    }

    /// The addresses of `peer`, or nil when nobody holds a reference to it.
    func lookup(_ peer: NodeID) -> [Address]? { entries[peer]?.addresses }

    /// References held on `peer`.
    func references(to peer: NodeID) -> Int { entries[peer]?.references ?? 0 }

    /// Lets programs name `peer` as `name`.
    mutating func setName(_ name: String, for peer: NodeID) {
        names[name] = peer
    }

    /// Resolves a program's peer name: a registered name or the text form of a node id.
    func resolve(_ name: String) -> NodeID? {
        names[name] ?? NodeID(name)
    }
}
