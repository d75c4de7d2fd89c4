import Foundation
import SpindleKernel
import Testing
@testable import SpindleNodeEngine

/// The worked example of docs/nodeengine.md.
@Suite("docs/nodeengine.md example")
struct DocExampleTests {
    final class Doubler: Component {
        let signatures = [OpSignature("double", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)])]
        func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
            .immediate(OpOutputs(.int((inputs[0]?.intValue ?? 0) * 2)))
        }
    }

    static let doublerJSON = """
    {"name": "doubler", "sites": [{"name": "ask", "type": "int"}, {"name": "doubled", "type": "int"}],
     "ops": [{"name": "double", "call": {"component": "math", "op": "double"}, "inputs": {"x": "ask"}, "outputs": {"y": "doubled"}},
             {"name": "reply", "call": {"syscall": "Reply"}, "inputs": {"in": "doubled"}}]}
    """

    @Test func twoNodesAskAndAnswer() async throws {
        var client = ProgramBuilder("asker")
        client.site("question", .int)
        client.site("answer", .int)
        client.site("problem", .string)
        client.syscall("ask", .wireCall, inputs: ["in": "question"], outputs: ["out": "answer", "error": "problem"],
                       params: ["peer": .string("b"), "site": .string("ask"), "timeoutMs": .int(500)])
        let sim = try await Simulation(names: ["a", "b"], seed: 1) { name, node in
            if name == "b" {
                try node.install(Doubler(), at: "math")
                try node.install(JSONDecoder().decode(Program.self, from: Data(Self.doublerJSON.utf8)))
            } else {
                try node.install(client.program)
            }
        }
        let exec = try sim.node("a").start(site: "question", value: .int(21))
        sim.run(for: .milliseconds(5))
        #expect(sim.trace.contains { $0.contains("a send kind=1 to=b") })
        #expect(sim.trace.contains { $0.contains("b send kind=2 to=a") })
        #expect(sim.trace.contains { $0.contains("a done \(exec) [answer=[42]]") })
        await sim.shutdown()
    }
}
