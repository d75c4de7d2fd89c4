// spindle-demo: the whole story in one process tree on loopback. See README.md.
import ArgumentParser
import Spindle

// The task-queue step re-enters this executable as a worker process: serve and exit here,
// before the command line is parsed.
ProcessWorkerMain.runIfWorker(kinds: [PrimeCountKind.self])

/// `spindle-demo`: runs every step and prints a summary table; exit 1 if a step failed.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spindle-demo",
        abstract: "Run Spindle's integrated demo on this machine (loopback only).",
        discussion: """
        Steps: a tasklet fork-join sum; a task queue of worker processes (this executable \
        re-entered as a worker); two node-engine nodes over TCP; two host agents with a host \
        mesh and a proc mesh of spindle-shard processes driven by the distributed runner. \
        Prints progress and a summary table. Exit status 1 when a step failed.
        """)

    func run() async throws {
        let log = DemoLog()
        print("Spindle demo — tasklets, a task queue of worker processes, nodes exchanging messages,")
        print("host agents with a proc mesh, and a sharded simulation, all on this machine.")

        await log.step("tasklets: fork-join sum") { try await taskletsStep(log) }
        await log.step("task queue: process workers") { try await queueStep(log) }
        await log.step("node engine: two nodes over TCP") { try await nodesStep(log) }
        await log.step("host mesh + runner: colony") { try await meshAndRunnerStep(log) }

        log.printSummary()
        if log.failed {
            print("spindle-demo: some steps failed")
            throw ExitCode(1)
        }
    }
}

// Parse (`--help` exits 0; a bad command line exits 64 with a usage line), then run. Inside
// an async function, so that `run()` is the command's async one (top-level code here picks
// the synchronous overloads of `main` and `run`).
func runDemo() async {
    let command = DemoCommand.parseOrExit()
    do {
        try await command.run()
    } catch {
        DemoCommand.exit(withError: error)
    }
}
await runDemo()
