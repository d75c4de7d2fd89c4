import Foundation
import SpindleKernel
import Testing
@testable import SpindleNodeEngine

let doublerJSON = """
{"name": "doubler", "sites": [{"name": "ask", "type": "int"}, {"name": "doubled", "type": "int"}],
 "ops": [{"name": "double", "call": {"component": "math", "op": "double"}, "inputs": {"x": "ask"}, "outputs": {"y": "doubled"}},
         {"name": "reply", "call": {"syscall": "Reply"}, "inputs": {"in": "doubled"}}]}
"""

/// The examples of docs/nodeengine.md: the leading one is DocLeadingExample.swift, which must
/// be the page's first Swift block, byte for byte; DocUserTypesExample.swift its second; the
/// worked example (third) runs below.
@Suite("docs/nodeengine.md examples")
struct DocExampleTests {
    /// The file's text and the page's Swift blocks.
    static func sources() throws -> (example: String, blocks: [String]) {
        let here = URL(fileURLWithPath: #filePath)
        let example = try String(contentsOf: here.deletingLastPathComponent().appendingPathComponent("DocLeadingExample.swift"),
                                 encoding: .utf8)
        let page = try String(contentsOf: here.deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/nodeengine.md"), encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]? = nil
        for line in page.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```swift" { current = [] } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n") + "\n")
                current = nil
            } else if current != nil { current!.append(line) }
        }
        return (example, blocks)
    }

    @Test func theLeadingExampleIsThePagesFirstSwiftBlockAndUnderFortyLines() throws {
        let (example, blocks) = try Self.sources()
        #expect(blocks.first == example)
        #expect(example.split(separator: "\n", omittingEmptySubsequences: false).count - 1 < 40)
    }

    @Test func theUserTypesExampleIsThePagesSecondSwiftBlock() throws {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let file = try String(contentsOf: here.appendingPathComponent("DocUserTypesExample.swift"), encoding: .utf8)
        #expect(try Self.sources().blocks.dropFirst().first == file)
    }

    /// Every line of the worked example (the page's third Swift block) is in this file.
    @Test func theWorkedExampleIsTheCodeThisFileRuns() throws {
        let blocks = try Self.sources().blocks
        try #require(blocks.count == 3, "the page has \(blocks.count) Swift blocks")
        let here = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let ours = Set(here.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        for line in blocks[2].split(separator: "\n") {
            let code = line.trimmingCharacters(in: .whitespaces)
            if code.isEmpty || code.hasPrefix("import ") || code.hasPrefix("//") { continue }
            if !ours.contains(code) { Issue.record("docs line not in DocExampleTests.swift: \(code)") }
        }
    }

    @Test func theLeadingExampleRunsOverTCP() async throws {
        #expect(try await within(60, "the leading example") { try await askTheDoubler() } == 42)
    }

    final class SyncDoubler: Component {
        let signatures = [OpSignature("double", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)])]
        func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
            guard let x = try? inputs.value(of: Int64.self, at: "x") else { return .failed("x is not an int") }
            return .immediate(OpOutputs(.int(x * 2)))
        }
    }

    @Test func twoNodesAskAndAnswer() async throws {
        var client = ProgramBuilder("asker")
        client.site("question", .int)
        client.site("answer", .int)
        client.site("problem", .string)
        client.syscall("ask", .wireCall, inputs: ["in": "question"], outputs: ["out": "answer", "error": "problem"],
                       params: ["peer": .string("b"), "site": .string("ask"), "timeoutMs": .int(500)])
        let sim = try await Simulation(names: ["a", "b"], seed: 1) { name, node in
            if name == "b" {
                try node.install(SyncDoubler(), at: "math")
                try node.install(JSONDecoder().decode(Program.self, from: Data(doublerJSON.utf8)))
            } else {
                try node.install(client.program)
            }
        }
        let exec = try sim.node("a").start(site: "question", value: .int(21))
        sim.run(for: .milliseconds(5))          // trace: a sends kind=1, b replies kind=2, a done [answer=[42]]
        #expect(sim.trace.contains { $0.contains("a send kind=1 to=b") })
        #expect(sim.trace.contains { $0.contains("b send kind=2 to=a") })
        #expect(sim.trace.contains { $0.contains("a done \(exec) [answer=[42]]") })
        await sim.shutdown()
    }
}
