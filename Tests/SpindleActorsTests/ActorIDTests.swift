import SpindleActors
import SpindleKernel
import Testing

@Suite("Actor ids")
struct ActorIDTests {
    let node = NodeID(raw: RawID128(high: 0x0190_f3a2_b4c5_0000, low: 0xa1b2_c3d4_e5f6_0718))

    @Test("text forms parse back", arguments: [
        "node-0190f3a2b4c50000a1b2c3d4e5f60718/7",
        "node-0190f3a2b4c50000a1b2c3d4e5f60718/counters",
        "node-0190f3a2b4c50000a1b2c3d4e5f60718/mesh.rank-2_a@tcp://127.0.0.1:7400",
        "node-0190f3a2b4c50000a1b2c3d4e5f60718/18446744073709551615@unix:///tmp/a@b",
        "node-0190f3a2b4c50000a1b2c3d4e5f60718/x@inproc://n1",
    ])
    func roundTrip(_ text: String) throws {
        let id = try ActorID(parsing: text)
        #expect(id.description == text)
        #expect(id.node == node)
        #expect(ActorID(text) == id)
        let decoded = try CompactDecoder().decode(ActorID.self, from: try CompactEncoder().encode(id))
        #expect(decoded == id && decoded.address == id.address)
    }

    @Test("parse errors name the part and offset", arguments: [
        ("node-0190f3a2b4c50000a1b2c3d4e5f6071/7", ActorIDParseError.Part.node, 0),
        ("host-0190f3a2b4c50000a1b2c3d4e5f60718/7", .node, 0),
        ("node-0190f3a2b4c50000a1b2c3d4e5f60718", .local, 37),
        ("node-0190f3a2b4c50000a1b2c3d4e5f60718/", .local, 38),
        ("node-0190f3a2b4c50000a1b2c3d4e5f60718/7x", .local, 38),
        ("node-0190f3a2b4c50000a1b2c3d4e5f60718/99999999999999999999", .local, 38),
        ("node-0190f3a2b4c50000a1b2c3d4e5f60718/a b", .local, 39),
        ("node-0190f3a2b4c50000a1b2c3d4e5f60718/a@tcp://h:99999", .address, 40),
    ])
    func parseErrors(_ text: String, _ part: ActorIDParseError.Part, _ offset: Int) {
        #expect(throws: ActorIDParseError.self) { try ActorID(parsing: text) }
        do {
            _ = try ActorID(parsing: text)
        } catch {
            #expect(error.part == part)
            #expect(error.offset == offset)
            #expect(error.description.contains(part.rawValue))
        }
    }

    @Test("identity is the node and the local part, not the address")
    func identity() {
        let a = ActorID(node: node, local: .number(3), address: .tcp(host: "127.0.0.1", port: 1))
        let b = ActorID(node: node, local: .number(3), address: nil)
        #expect(a == b)
        #expect(Set([a, b]).count == 1)
        #expect(a != ActorID(node: node, local: .name("three")))
    }
}
