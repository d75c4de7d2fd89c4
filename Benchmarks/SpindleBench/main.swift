// spindle-bench: Spindle's benchmarks, each side by side with its baseline in the same run.
//
//   swift run -c release spindle-bench [suite…] [--json] [--list]
//
// Suites register in `allSuites` (Suites.swift). A debug build refuses to report numbers.
import ArgumentParser
import Spindle

#if canImport(Glibc)
import Glibc
#endif

// The process backend of the queue suite re-enters this executable as a task worker: serve
// and exit here, before anything else runs.
ProcessWorkerMain.runIfWorker(kinds: benchWorkerKinds, jobs: benchWorkerJobs)

/// `spindle-bench`: runs the named suites (default: all) and prints a table or JSON lines.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spindle-bench",
        abstract: "Spindle's benchmarks, each beside its baseline measured in the same run.",
        discussion: """
        Release builds only: `swift build -c release`, then `.build/release/spindle-bench`. \
        Record figures as ratios against the baseline of the same run (docs/benchmarks.md).
        """)

    @Argument(help: "Suites to run, in the order listed by --list (default: all but cluster).")
    var suites: [String] = []

    @Flag(help: "Print one JSON object per result instead of a table.")
    var json = false

    @Flag(help: "List the suites and exit.")
    var list = false

    /// The cluster suite runs an echo server inside a host namespace with this option.
    @Option(help: .hidden)
    var echoServer: String?

    func validate() throws {
        let known = allSuites.map(\.name)
        if let bad = suites.first(where: { !known.contains($0) }) {
            throw ValidationError("unknown suite \"\(bad)\"; known suites: \(known.joined(separator: ", "))")
        }
    }

    func run() async throws {
        if let echoServer {
            do { try EchoPingPong.serve(try Address(parsing: echoServer)) } catch {
                printError("spindle-bench --echo-server: \(error)")
                throw ExitCode(2)
            }
        }
        if list {
            for suite in allSuites { print(pad(suite.name, 11) + (suiteSummaries[suite.name] ?? "")) }
            return
        }
        #if DEBUG
        printError("spindle-bench: refusing to report numbers from a debug build; use `swift run -c release spindle-bench`")
        throw ExitCode(2)
        #else
        let reporter = BenchReporter(json: json)
        reporter.printHeader()
        for suite in allSuites where suites.contains(suite.name) || (suites.isEmpty && !suite.onlyWhenNamed) {
            do {
                try await suite.run(reporter)
            } catch {
                printError("spindle-bench: suite \(suite.name) failed: \(error)")
                throw ExitCode(1)
            }
        }
        reporter.printFooter()
        #endif
    }
}

// Parse (`--help` exits 0; a bad command line exits 64 with a usage line), then run. Inside
// an async function, so that `run()` is the command's async one (top-level code here picks
// the synchronous overloads of `main` and `run`).
func runBench() async {
    let command = BenchCommand.parseOrExit()
    do {
        try await command.run()
    } catch {
        BenchCommand.exit(withError: error)
    }
}
await runBench()
