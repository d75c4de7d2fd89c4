import Foundation
import SpindleKernel
import Testing
@testable import SpindleNodeEngine

@Suite("Programs and installation")
struct ProgramTests {
    @Test func jsonProgramDecodesAndRuns() throws {
        let json = """
        {"name": "double-it",
         "sites": [{"name": "in", "type": "int"}, {"name": "out", "type": "int"}],
         "ops": [{"name": "d", "call": {"component": "math", "op": "double"},
                  "inputs": {"x": "in"}, "outputs": {"y": "out"}}]}
        """
        let program = try JSONDecoder().decode(Program.self, from: Data(json.utf8))
        let again = try JSONDecoder().decode(Program.self, from: JSONEncoder().encode(program))
        #expect(again == program)
        let (node, _) = try makeNode(program)
        let exec = try node.start(site: "in", value: .int(21))
        let outs = pollUntilIdle(node, at: .zero)
        #expect(outs.finished.first?.id == exec)
        #expect(outs.finished.first?.result("out") == .int(42))
    }

    @Test func builderAndJsonAgree() throws {
        var b = ProgramBuilder("p")
        b.site("in", .int)
        b.site("slept")
        b.syscall("nap", .sleep, inputs: ["in": "in"], outputs: ["out": "slept"], params: ["delayMs": .int(5)])
        let json = #"{"name":"p","sites":[{"name":"in","type":"int"},{"name":"slept"}],"ops":[{"name":"nap","call":{"syscall":"Sleep"},"inputs":{"in":"in"},"outputs":{"out":"slept"},"params":{"delayMs":5}}]}"#
        #expect(try JSONDecoder().decode(Program.self, from: Data(json.utf8)) == b.program)
    }

    @Test(arguments: [
        (#"{"ops":[{"name":"o","call":{"syscall":"Nope"}}]}"#, ProgramError.unknownOp(op: "o", call: "syscall Nope")),
        (#"{"ops":[{"name":"o","call":{"component":"math","op":"cube"}}]}"#, ProgramError.unknownOp(op: "o", call: "math.cube")),
        (#"{"ops":[{"name":"o","call":{"component":"db","op":"get"}}]}"#, ProgramError.unboundSlot(op: "o", slot: "db")),
        (#"{"sites":[{"name":"s","type":"string"}],"ops":[{"name":"o","call":{"component":"math","op":"double"},"inputs":{"x":"s"}}]}"#,
         ProgramError.typeMismatch(op: "o", port: "x", site: "s", portType: .int, siteType: .string)),
        (#"{"ops":[{"name":"o","call":{"component":"math","op":"double"}}]}"#, ProgramError.missingInput(op: "o", port: "x")),
        (#"{"ops":[{"name":"o","call":{"component":"math","op":"double"},"inputs":{"x":"ghost"}}]}"#,
         ProgramError.unknownSite(op: "o", port: "x", site: "ghost")),
        (#"{"sites":[{"name":"s"}],"ops":[{"name":"o","call":{"component":"math","op":"double"},"inputs":{"x":"s","q":"s"}}]}"#,
         ProgramError.unknownPort(op: "o", port: "q")),
        (#"{"sites":[{"name":"s"}],"ops":[{"name":"o","call":{"syscall":"Sleep"},"inputs":{"in":"s"}}]}"#,
         ProgramError.invalidParameter(op: "o", parameter: "delayMs", problem: "missing (milliseconds are required)")),
        (#"{"sites":[{"name":"a"},{"name":"b"}],"ops":[{"name":"f","call":{"component":"math","op":"double"},"inputs":{"x":"a"},"outputs":{"y":"b"}},{"name":"g","call":{"component":"math","op":"double"},"inputs":{"x":"b"},"outputs":{"y":"a"}}]}"#,
         ProgramError.cycleWithoutTrigger(ops: ["f", "g"])),
    ])
    func invalidProgramsAreRefusedNamingTheOp(json: String, expected: ProgramError) throws {
        let program = try JSONDecoder().decode(Program.self, from: Data(json.utf8))
        let node = Node(configuration: NodeConfiguration(), clock: ManualClock())
        try node.install(MathComponent(), at: "math")
        #expect(throws: expected) { try node.install(program) }
    }

    @Test func cycleWithAnOutsideEntryIsAccepted() throws {
        // `first` is in the cycle first → twice → first, but its any-of group also reads the
        // entry site `seed`, so the cycle can start from outside.
        var b = ProgramBuilder("loop")
        b.site("seed"); b.site("loop"); b.site("next")
        b.syscall("first", .any, inputs: ["a": "seed", "b": "loop"], outputs: ["out": "next"], params: ["group": .string("g")])
        b.op("twice", .component(slot: "math", op: "double"), inputs: ["x": "next"], outputs: ["y": "loop"])
        let node = Node(configuration: NodeConfiguration(), clock: ManualClock())
        try node.install(MathComponent(), at: "math")
        try node.install(b.program)
    }

    @Test func dependenciesAreResolvedAtInstall() throws {
        let node = Node(configuration: NodeConfiguration(), clock: ManualClock())
        #expect(throws: DependencyError.notBound(slot: "math", requiredBy: "user")) {
            try node.install(UserComponent(ownSlot: "user"), at: "user")
        }
        try node.install(TickComponent(), at: "math")
        #expect(throws: DependencyError.typeMismatch(slot: "math", expected: "MathComponent", found: "TickComponent")) {
            try node.install(UserComponent(ownSlot: "user"), at: "user")
        }
        let ok = Node(configuration: NodeConfiguration(), clock: ManualClock())
        try ok.install(MathComponent(), at: "math")
        try ok.install(UserComponent(ownSlot: "user"), at: "user")
        #expect(throws: DependencyError.slotTaken("math")) { try ok.install(MathComponent(), at: "math") }
    }

    @Test func aComponentCannotReachItselfThroughTheSiblingView() throws {
        var b = ProgramBuilder("self")
        b.site("in"); b.site("dep"); b.site("me")
        b.op("use", .component(slot: "user", op: "useMath"), inputs: ["x": "in"], outputs: ["y": "dep"])
        b.op("self", .component(slot: "user", op: "reachSelf"), inputs: ["x": "in"], outputs: ["y": "me"])
        let node = Node(configuration: NodeConfiguration(), clock: ManualClock())
        try node.install(MathComponent(), at: "math")
        try node.install(UserComponent(ownSlot: "user"), at: "user")
        try node.install(b.program)
        try node.start(site: "in", value: .unit)
        let done = pollUntilIdle(node, at: .zero).finished
        #expect(done.first?.result("dep") == .int(7))
        #expect(done.first?.result("me") == .string(DependencyError.selfAccess(slot: "user").description))
    }

    @Test func hostRequestsNameWhatWasWrong() throws {
        let node = Node(configuration: NodeConfiguration(), clock: ManualClock())
        #expect(throws: NodeError.noProgram) { try node.start(site: "x", value: .unit) }
        try node.install(Program(name: "empty"))
        #expect(throws: NodeError.unknownSite("x")) { try node.start(site: "x", value: .unit) }
        #expect(throws: ProgramError.alreadyInstalled("empty")) { try node.install(Program(name: "again")) }
    }
}
