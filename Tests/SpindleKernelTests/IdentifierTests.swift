import Testing
import SpindleKernel

@Suite struct IdentifierTests {
    @Test func textRoundTripForEveryType() throws {
        func check<ID: GlobalIdentifier>(_: ID.Type) throws {
            let id = ID.generate()
            let text = id.description
            #expect(text.hasPrefix(ID.prefix + "-"))
            #expect(text.count == ID.prefix.count + 1 + 32)
            #expect(try ID(parsing: text) == id)
            #expect(ID(text) == id)
        }
        try check(HostID.self); try check(ProcID.self); try check(NodeID.self)
        try check(TaskID.self); try check(SessionID.self)
        func checkLocal<ID: LocalIdentifier>(_: ID.Type) throws {
            for v: UInt64 in [0, 1, 42, .max] {
                let id = ID(v)
                #expect(try ID(parsing: id.description) == id)
            }
        }
        try checkLocal(CommandID.self); try checkLocal(ExecID.self); try checkLocal(ShardID.self)
        #expect(ShardID(7).description == "shard-7")
        #expect(HostID(raw: RawID128(high: 1, low: 0xAB)).description == "host-0000000000000001" + "00000000000000ab")
    }

    @Test func rejectionsSayWhatWasWrong() {
        let good = NodeID.generate().raw.hex
        #expect(throws: IdentifierParseError.self) { try NodeID(parsing: "host-" + good) }
        do { _ = try NodeID(parsing: "host-" + good) } catch {
            #expect(error.expected == "node" && error.problem.contains("prefix"))
        }
        for bad in ["node-", "node-" + good.dropLast(), "node-" + good + "0", "node-+" + good.dropFirst(),
                    "node-" + good.dropFirst() + "g"] {
            #expect(NodeID(bad) == nil, "\(bad)")
            do { _ = try NodeID(parsing: bad) } catch { #expect(error.problem.contains("32 hex digits")) }
        }
        #expect(ShardID("shard-+3") == nil)
        #expect(ShardID("shard-") == nil)
        #expect(ShardID("shard-18446744073709551616") == nil)   // UInt64.max + 1
        #expect(ShardID("task-3") == nil)
    }

    @Test func uniqueAndOrderedInOneProcess() {
        var last = TaskID.generate()
        var seen: Set<TaskID> = [last]
        for _ in 0..<100_000 {
            let id = TaskID.generate()
            #expect(id > last)   // generation order is preserved
            seen.insert(id)
            last = id
        }
        #expect(seen.count == 100_001)
    }

    @Test func uniqueAcrossConcurrentGenerators() async {
        let batches = await withTaskGroup(of: [RawID128].self) { group in
            for _ in 0..<4 { group.addTask { (0..<20_000).map { _ in RawID128.generate() } } }
            var all: [[RawID128]] = []
            for await b in group { all.append(b) }
            return all
        }
        for b in batches { #expect(zip(b, b.dropFirst()).allSatisfy { $0 < $1 }) }
        #expect(Set(batches.joined()).count == 80_000)
    }

    @Test func independentGeneratorsDifferInTheRandomHalf() {
        // Two ids made in the same millisecond and counter slot by different processes differ
        // by their 64 random bits; here: the low halves of a run are all distinct.
        let lows = Set((0..<10_000).map { _ in RawID128.generate().low })
        #expect(lows.count == 10_000)
    }

    @Test func localSequenceCountsUp() {
        let seq = LocalIDSequence<CommandID>(startingAt: 5)
        #expect(seq.make() == CommandID(5))
        #expect(seq.make() == CommandID(6))
        #expect(CommandID(6) > CommandID(5))
    }
}
