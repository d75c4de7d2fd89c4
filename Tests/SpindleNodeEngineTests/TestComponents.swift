import SpindleKernel
import Synchronization
@testable import SpindleNodeEngine

/// A component with one op of each shape the tests need.
final class MathComponent: Component {
    let signatures: [OpSignature] = [
        OpSignature("double", inputs: [PortSpec("x", .int)], outputs: [PortSpec("y", .int)]),
        OpSignature("add", inputs: [PortSpec("a", .int), PortSpec("b", .int)], outputs: [PortSpec("sum", .int)]),
        OpSignature("absorb", inputs: [PortSpec("x")]),
        OpSignature("later", inputs: [PortSpec("x")], outputs: [PortSpec("y")], isAsync: true),
        OpSignature("now", inputs: [PortSpec("x")], outputs: [PortSpec("y")], isAsync: true),
        OpSignature("fail", inputs: [PortSpec("x")], outputs: [PortSpec("y")]),
        OpSignature("text", inputs: [PortSpec("x")], outputs: [PortSpec("s", .string)]),
    ]
    /// Completion handles of `later` calls, for the test to complete.
    var handles: [CompletionHandle] = []
    var calls = 0

    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        calls += 1
        switch op {
        case 0: return .immediate(OpOutputs(.int((inputs[0]?.intValue ?? 0) * 2)))
        case 1: return .immediate(OpOutputs(.int((inputs[0]?.intValue ?? 0) + (inputs[1]?.intValue ?? 0))))
        case 2: return .absorb
        case 3:
            let h = context.openCompletion()
            handles.append(h)
            return .async(h.command)
        case 4:
            let cmd = context.allocateCommand()
            context.complete(cmd, OpOutputs(inputs[0] ?? .unit))
            return .async(cmd)
        case 5: return .failed("boom")
        default: return .immediate(OpOutputs(.string("\(inputs[0] ?? .unit)")))
        }
    }
}

/// A component that needs a `MathComponent` at slot "math" and can try to reach itself.
final class UserComponent: Component {
    let signatures = [OpSignature("useMath", inputs: [PortSpec("x")], outputs: [PortSpec("y")]),
                      OpSignature("reachSelf", inputs: [PortSpec("x")], outputs: [PortSpec("y")])]
    let dependencies = [ComponentDependency(slot: "math", type: MathComponent.self)]
    let ownSlot: String

    init(ownSlot: String) { self.ownSlot = ownSlot }

    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        do {
            if op == 0 {
                let math = try context.dependency("math", as: MathComponent.self)
                return .immediate(OpOutputs(.int(Int64(math.signatures.count))))
            }
            _ = try context.siblings.component(at: ownSlot)
            return .immediate(OpOutputs(.string("reached")))
        } catch {
            return .immediate(OpOutputs(.string(error.description)))
        }
    }
}

/// Counts timers it is told of.
final class TickComponent: Component {
    let signatures = [OpSignature("arm", inputs: [PortSpec("x")])]
    var fired: [UInt32] = []

    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        context.scheduleTimer(after: .milliseconds(5), kind: 7)
        return .absorb
    }

    func timerFired(kind: UInt32, context: NodeContext) { fired.append(kind) }
}

func ms(_ v: Int64) -> MonotonicInstant { MonotonicInstant(nanoseconds: UInt64(v) * 1_000_000) }

/// A node with a `MathComponent` at "math" and `program` installed.
func makeNode(_ program: Program, configure: (inout NodeConfiguration) -> Void = { _ in }) throws -> (Node, MathComponent) {
    var c = NodeConfiguration()
    configure(&c)
    let node = Node(id: NodeID(raw: RawID128(high: 9, low: 9)), configuration: c, clock: ManualClock())
    let math = MathComponent()
    try node.install(math, at: "math")
    try node.install(program)
    return (node, math)
}

/// Polls until idle (bounded); returns every outcome.
@discardableResult
func pollUntilIdle(_ node: Node, at now: MonotonicInstant, limit: Int = 100) -> [PollOutcome] {
    var outs: [PollOutcome] = []
    for _ in 0..<limit {
        let o = node.poll(now: now)
        outs.append(o)
        if o.status == .idle { break }
    }
    return outs
}

extension Array where Element == PollOutcome {
    var events: [NodeEvent] { flatMap { $0.events.map(\.event) } }
    var finished: [FinishedExecution] { flatMap(\.finished) }
    var failures: [OpFailure] {
        events.compactMap { if case .opFailed(let f) = $0 { return f } else { return nil } }
    }
}
