// spindle-demo: the whole story in one process tree on loopback. See README.md.
import Spindle

#if canImport(Glibc)
import Glibc
#endif

// The task-queue step re-enters this executable as a worker process: serve and exit here.
ProcessWorkerMain.runIfWorker(kinds: [PrimeCountKind.self])

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
    exit(1)
}
