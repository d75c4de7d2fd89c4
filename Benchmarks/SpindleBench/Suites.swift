/// Every suite spindle-bench knows, in the order they run. Each suite lives in its own file
/// (`<Name>Suite.swift`) and adds one line here.
let allSuites: [BenchSuite] = [
    kernelSuite,
    eventLoopSuite,
    transportSuite,
    taskletsSuite,
    queueSuite,
    engineSuite,
    meshSuite,
    runnerSuite,
    actorsSuite,
]
