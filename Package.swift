// swift-tools-version: 6.1
// Spindle: one Swift runtime for tasklets, a node engine, a task queue, host meshes and a
// distributed tick runner. See docs/architecture.md and ../shared/docs/DESIGN.md.
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Spindle",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Spindle", targets: ["Spindle"]),
        .library(name: "SpindleKernel", targets: ["SpindleKernel"]),
        .library(name: "SpindleEventLoop", targets: ["SpindleEventLoop"]),
        .library(name: "SpindleTasklets", targets: ["SpindleTasklets"]),
        .library(name: "SpindleTaskQueue", targets: ["SpindleTaskQueue"]),
        .library(name: "SpindleNodeEngine", targets: ["SpindleNodeEngine"]),
        .library(name: "SpindleHostMesh", targets: ["SpindleHostMesh"]),
        .library(name: "SpindleRunner", targets: ["SpindleRunner"]),
        .library(name: "SpindleActors", targets: ["SpindleActors"]),
        .library(name: "SpindleTCP", targets: ["SpindleTCP"]),
        .library(name: "SpindleProcessWorkers", targets: ["SpindleProcessWorkers"]),
        .executable(name: "spindle", targets: ["SpindleCLI"]),
        .executable(name: "spindle-demo", targets: ["SpindleDemo"]),
        .executable(name: "spindle-bench", targets: ["SpindleBench"]),
        .executable(name: "spindle-shard", targets: ["SpindleShardServer"]),
        .executable(name: "spindle-keeper", targets: ["SpindleKeeper"]),
        .executable(name: "spindle-fuzz", targets: ["SpindleFuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // MARK: C system library
        .systemLibrary(
            name: "CLibUV",
            path: "Modules/CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),

        // MARK: Support, kernel and event loop
        // The runtime's shared internals (locks, parking, threads, SplitMix64, byte coding,
        // loop confinement): `package` access, not a product.
        .target(
            name: "CSpindleSupport",
            path: "Modules/CSpindleSupport"
        ),
        .target(
            name: "SpindleSupport",
            dependencies: ["CSpindleSupport"],
            path: "Modules/SpindleSupport",
            swiftSettings: strict
        ),
        .target(
            name: "SpindleKernel",
            dependencies: [
                "SpindleSupport",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Modules/SpindleKernel",
            swiftSettings: strict
        ),
        .target(
            name: "SpindleEventLoop",
            dependencies: [
                "CLibUV", "SpindleKernel", "SpindleSupport",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Modules/SpindleEventLoop",
            swiftSettings: strict
        ),

        // MARK: Modules
        .target(
            name: "CSpindleCycles",
            path: "Modules/CSpindleCycles"
        ),
        .target(
            name: "SpindleTasklets",
            dependencies: ["SpindleKernel", "SpindleSupport", "CSpindleCycles"],
            path: "Modules/SpindleTasklets",
            swiftSettings: strict
        ),
        .target(
            name: "SpindleTaskQueue",
            dependencies: [
                "SpindleKernel", "SpindleSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Modules/SpindleTaskQueue",
            // The queue is generic over the kind and, unspecialised, spends most of its time
            // instantiating generic metadata (measured: ~7x slower on no-op tasks). Its hot paths
            // are @inlinable instead, so an app's TaskQueue<MyKind> is specialised in the app's
            // module (docs/taskqueue.md, "Performance"); no unsafe flags, so the package can be
            // used as a remote dependency.
            swiftSettings: strict
        ),
        .target(
            name: "SpindleNodeEngine",
            dependencies: [
                "SpindleKernel", "SpindleEventLoop", "SpindleSupport",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Modules/SpindleNodeEngine",
            swiftSettings: strict
        ),
        .target(
            name: "SpindleHostMesh",
            dependencies: [
                "SpindleKernel", "SpindleEventLoop", "SpindleSupport",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Modules/SpindleHostMesh",
            swiftSettings: strict
        ),
        // The process-group keeper every proc runs under (C, no dependencies): see
        // docs/hostmesh.md, "Process groups and no orphans".
        .executableTarget(
            name: "SpindleKeeper",
            path: "Modules/SpindleKeeper"
        ),
        .target(
            name: "SpindleRunner",
            dependencies: [
                "SpindleKernel", "SpindleTasklets", "SpindleSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Modules/SpindleRunner",
            swiftSettings: strict
        ),

        .target(
            name: "SpindleActors",
            dependencies: [
                "SpindleKernel", "SpindleSupport", "SpindleHostMesh",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Modules/SpindleActors",
            swiftSettings: strict
        ),

        .executableTarget(
            name: "SpindleShardServer",
            dependencies: [
                "SpindleRunner", "SpindleKernel", "SpindleTCP", "SpindleHostMesh",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Modules/SpindleShardServer",
            swiftSettings: strict
        ),

        // MARK: Plugins
        .target(
            name: "CSpindleAEAD",
            path: "Plugins/CSpindleAEAD"
        ),
        .target(
            name: "SpindleTCP",
            dependencies: [
                "SpindleKernel", "SpindleEventLoop", "CSpindleAEAD",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Plugins/SpindleTCP",
            swiftSettings: strict
        ),
        .target(
            name: "SpindleProcessWorkers",
            dependencies: [
                "SpindleKernel", "SpindleEventLoop", "SpindleTaskQueue", "SpindleSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Plugins/SpindleProcessWorkers",
            swiftSettings: strict
        ),

        // MARK: Umbrella and executables
        .target(
            name: "Spindle",
            dependencies: [
                "SpindleKernel", "SpindleEventLoop", "SpindleTasklets", "SpindleTaskQueue",
                "SpindleNodeEngine", "SpindleHostMesh", "SpindleRunner", "SpindleActors", "SpindleTCP",
                "SpindleProcessWorkers",
            ],
            path: "Modules/Spindle",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "SpindleCLI",
            dependencies: [
                "Spindle", "SpindleSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Modules/SpindleCLI",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "SpindleDemo",
            dependencies: [
                "Spindle",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Modules/SpindleDemo",
            swiftSettings: strict
        ),

        // MARK: Fuzzing (make fuzz)
        .target(
            name: "CSpindleFuzz",
            path: "Fuzz/CSpindleFuzz"
        ),
        .executableTarget(
            name: "SpindleFuzz",
            dependencies: ["SpindleKernel", "SpindleTCP", "CSpindleFuzz"],
            path: "Fuzz/SpindleFuzz",
            swiftSettings: strict
        ),

        // MARK: Benchmarks
        .target(
            name: "CBaselines",
            dependencies: ["CLibUV"],
            path: "Benchmarks/CBaselines"
        ),
        .executableTarget(
            name: "SpindleBench",
            dependencies: [
                "Spindle", "CBaselines",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/SpindleBench",
            swiftSettings: strict
        ),

        // MARK: Tests
        .testTarget(
            name: "SpindleKernelTests",
            dependencies: ["SpindleSupport", "SpindleKernel"],
            path: "Tests/SpindleKernelTests",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "EventLoopFixture",
            dependencies: ["SpindleEventLoop", "CLibUV"],
            path: "Tests/Fixtures/EventLoopFixture",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleEventLoopTests",
            dependencies: ["SpindleEventLoop", "SpindleKernel", "CLibUV", "NetworkTestSupport", "EventLoopFixture"],
            path: "Tests/SpindleEventLoopTests",
            swiftSettings: strict
        ),
        .target(
            name: "NetworkTestSupport",
            dependencies: ["SpindleKernel"],
            path: "Tests/Support/NetworkTestSupport",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ReliablePeerFixture",
            dependencies: ["SpindleTCP", "SpindleEventLoop", "SpindleKernel"],
            path: "Tests/Fixtures/ReliablePeerFixture",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleTCPTests",
            dependencies: ["SpindleTCP", "SpindleEventLoop", "SpindleKernel", "NetworkTestSupport", "ReliablePeerFixture",
                           .product(name: "MetricsTestKit", package: "swift-metrics")],
            path: "Tests/SpindleTCPTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleTaskletsTests",
            dependencies: ["SpindleSupport", "SpindleTasklets"],
            path: "Tests/SpindleTaskletsTests",
            swiftSettings: strict
        ),
        .target(
            name: "TaskQueueTestSupport",
            path: "Tests/Support/TaskQueueTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleTaskQueueTests",
            dependencies: ["SpindleTaskQueue", "SpindleKernel", "TaskQueueTestSupport",
                           .product(name: "MetricsTestKit", package: "swift-metrics")],
            path: "Tests/SpindleTaskQueueTests",
            swiftSettings: strict
        ),
        .target(
            name: "TaskQueueFixtureKinds",
            dependencies: ["SpindleTaskQueue", "SpindleProcessWorkers"],
            path: "Tests/Fixtures/TaskQueueFixtureKinds",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "TaskQueueWorkerFixture",
            dependencies: ["SpindleProcessWorkers", "TaskQueueFixtureKinds"],
            path: "Tests/Fixtures/TaskQueueWorkerFixture",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleProcessWorkersTests",
            dependencies: ["SpindleProcessWorkers", "SpindleTaskQueue", "SpindleEventLoop", "SpindleKernel",
                           "TaskQueueFixtureKinds", "TaskQueueWorkerFixture", "TaskQueueTestSupport"],
            path: "Tests/SpindleProcessWorkersTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleNodeEngineTests",
            dependencies: ["SpindleSupport", "SpindleNodeEngine", "SpindleKernel", "SpindleEventLoop", "SpindleTCP",
                           .product(name: "MetricsTestKit", package: "swift-metrics")],
            path: "Tests/SpindleNodeEngineTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleHostMeshTests",
            dependencies: ["SpindleSupport", "SpindleHostMesh", "SpindleTCP", "SpindleEventLoop", "SpindleKernel", "NetworkTestSupport",
                           "SpindleKeeper", "SpindleRunner", .product(name: "MetricsTestKit", package: "swift-metrics")],
            path: "Tests/SpindleHostMeshTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleRunnerTests",
            dependencies: ["SpindleRunner", "SpindleHostMesh", "SpindleTCP", "SpindleEventLoop", "SpindleKernel",
                           "SpindleSupport", .product(name: "MetricsTestKit", package: "swift-metrics")],
            path: "Tests/SpindleRunnerTests",
            swiftSettings: strict
        ),
        .target(
            name: "ActorFixtureActors",
            dependencies: ["SpindleActors", "SpindleKernel"],
            path: "Tests/Fixtures/ActorFixtureActors",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ActorPeerFixture",
            dependencies: ["SpindleActors", "SpindleKernel", "SpindleTCP", "ActorFixtureActors"],
            path: "Tests/Fixtures/ActorPeerFixture",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleActorsTests",
            dependencies: ["Spindle", "SpindleActors", "SpindleKernel", "SpindleSupport", "SpindleTCP", "SpindleEventLoop",
                           "SpindleHostMesh", "NetworkTestSupport", "ActorFixtureActors", "ActorPeerFixture",
                           .product(name: "DequeModule", package: "swift-collections"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "MetricsTestKit", package: "swift-metrics")],
            path: "Tests/SpindleActorsTests",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ClusterNodeFixture",
            dependencies: ["SpindleNodeEngine", "SpindleTCP", "SpindleEventLoop", "SpindleKernel"],
            path: "Tests/Fixtures/ClusterNodeFixture",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleClusterTests",
            dependencies: ["SpindleHostMesh", "SpindleTCP", "SpindleEventLoop", "SpindleKernel", "SpindleNodeEngine",
                           "SpindleRunner", "SpindleCLI", "ClusterNodeFixture"],
            path: "Tests/SpindleClusterTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleSupportTests",
            dependencies: ["SpindleSupport", "SpindleEventLoop"],
            path: "Tests/SpindleSupportTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "SpindleIntegrationTests",
            dependencies: ["Spindle",
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "Logging", package: "swift-log")],
            path: "Tests/SpindleIntegrationTests",
            swiftSettings: strict
        ),
    ]
)
