// spindle-bench: Spindle's benchmarks, each side by side with its baseline in the same run.
//
//   swift run -c release spindle-bench [suite…] [--json]
//
// Suites register in `allSuites` (Suites.swift). A debug build refuses to report numbers.
import Spindle

#if canImport(Glibc)
import Glibc
#endif

// The process backend of the queue suite re-enters this executable as a task worker: serve
// and exit here, before anything else runs.
ProcessWorkerMain.runIfWorker(kinds: benchWorkerKinds)

#if DEBUG
printError("spindle-bench: refusing to report numbers from a debug build; use `swift run -c release spindle-bench`")
exit(2)
#else
var options = BenchOptions(arguments: Array(CommandLine.arguments.dropFirst()))
let known = allSuites.map(\.name)
if let bad = options.suites.first(where: { !known.contains($0) }) {
    printError("spindle-bench: unknown suite \"\(bad)\"; known suites: \(known.joined(separator: ", "))")
    exit(2)
}
let reporter = BenchReporter(json: options.json)
reporter.printHeader()
for suite in allSuites where options.suites.isEmpty || options.suites.contains(suite.name) {
    do {
        try await suite.run(reporter)
    } catch {
        printError("spindle-bench: suite \(suite.name) failed: \(error)")
        exit(1)
    }
}
reporter.printFooter()
#endif
