import SpindleKernel
import Testing
@testable import SpindleNodeEngine

@Suite("Long chains")
struct ChainStressTests {
    @Test func aThousandOpChainRunsRepeatedly() throws {
        let (node, math) = try makeNode(EngineTests.chain(1000))
        for _ in 0..<20 {
            let exec = try node.start(site: "s0", value: .int(0))
            _ = node.poll(now: .zero)
            #expect(node.execution(exec)?.result("s1000") != nil)
        }
        #expect(math.calls == 20_000)
    }
}
