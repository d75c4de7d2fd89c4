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
    clusterSuite,
]

/// What each suite measures, for `spindle-bench --list`.
let suiteSummaries: [String: String] = [
    "kernel": "ids, clocks, frame encode/decode",
    "eventloop": "libuv loop: submit, timers, streams",
    "transport": "in-process and TCP transports, reliable links: ping-pong and pump",
    "tasklets": "fork-join launch, barrier, parallelFor, parallelReduce (vs C pthreads, concurrentPerform)",
    "queue": "task queue on threads and processes: throughput, round trips, map (vs Python's ProcessPoolExecutor)",
    "engine": "node engine: op chains, ingress, request/response (vs C libuv ping-pong)",
    "mesh": "host mesh attach and spawn",
    "runner": "distributed runner ticks/s, in process and remote",
    "actors": "distributed actor calls, in process and over TCP (vs raw TCP ping-pong)",
    "cluster": "3 namespace hosts (root; only when named): attach, spawn, remote runner tick vs the TCP round trip between them",
]
