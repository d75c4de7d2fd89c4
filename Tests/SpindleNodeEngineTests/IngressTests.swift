import SpindleKernel
import Synchronization
import Testing
@testable import SpindleNodeEngine

@Suite("Ingress queue")
struct IngressTests {
    @Test func concurrentProducersLoseNothingAndKeepTheirOrder() async throws {
        var c = NodeConfiguration()
        c.ingressCapacity = 1 << 16
        let node = Node(configuration: c, clock: ManualClock())
        let ingress = node.ingress
        let producers = 4, perProducer = 5_000
        let producing = Task.detached {
            await withTaskGroup(of: Void.self) { group in
                for p in 0..<producers {
                    group.addTask {
                        for i in 0..<perProducer {
                            try? ingress.push(.completion(CommandID(UInt64(p) << 32 | UInt64(i)), OpOutputs()))
                        }
                    }
                }
            }
        }
        var seen: [[UInt64]] = Array(repeating: [], count: producers)
        let deadline = SystemClock().now() + .seconds(30)
        while seen.reduce(0, { $0 + $1.count }) < producers * perProducer {
            #expect(SystemClock().now() < deadline, "timed out draining the ingress queue")
            if SystemClock().now() >= deadline { break }
            for r in node.poll(now: .zero).events {
                if case .unknownCompletion(let cmd) = r.event { seen[Int(cmd.value >> 32)].append(cmd.value & 0xFFFF_FFFF) }
            }
            await Task.yield()
        }
        await producing.value
        for p in 0..<producers { #expect(seen[p] == (0..<UInt64(perProducer)).map { $0 }) }
        #expect(node.context.bus.count(.unknownCompletion) == UInt64(producers * perProducer))
    }

    @Test func theWakerRunsWhenTheQueueBecomesNonEmpty() throws {
        let ingress = Ingress(capacity: 8, resultCap: 100, detailCap: 10)
        let wakes = Atomic<Int>(0)
        ingress.setWaker { wakes.add(1, ordering: .relaxed) }
        for _ in 0..<3 { try ingress.push(.start(site: "x", value: .unit)) }
        #expect(wakes.load(ordering: .relaxed) == 1)
        #expect(ingress.drainAll().count == 3 && ingress.isEmpty)
        try ingress.push(.start(site: "x", value: .unit))
        #expect(wakes.load(ordering: .relaxed) == 2)
    }

    @Test func aFullRingRefusesAndCounts() throws {
        let ingress = Ingress(capacity: 4, resultCap: 100, detailCap: 10)
        for _ in 0..<4 { try ingress.push(.start(site: "x", value: .unit)) }
        #expect(throws: IngressError.full(lane: .control, capacity: 4)) { try ingress.push(.start(site: "x", value: .unit)) }
        #expect(ingress.takeRejections().full == [.control: 1])
        #expect(ingress.drainAll().count == 4)
        try ingress.push(.start(site: "x", value: .unit))   // room again after the drain
    }
}
