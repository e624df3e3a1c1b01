// swift-tools-version:6.2
//
// Loop micro-benchmarks for swift-asyncio, compared with Python's asyncio and uvloop by
// run-loop-bench.sh; the package-benchmark suites (Benchmarks/LoopBenchmarks and
// Benchmarks/EchoBenchmarks, `swift package benchmark`, with allocation and CPU thresholds in
// Thresholds/ that check-thresholds.sh checks); and the SwiftNIO echo servers (TCP, UDP and
// TLS with NIOSSL) that the echo benchmarks (run-echo-bench.sh, run-udp-bench.sh,
// run-tls-bench.sh and friends) compare swift-asyncio's servers with. A package of its own
// so that the library's package stays free of benchmark targets; it builds the library from
// the parent directory.

import PackageDescription

// A path dependency's identity is the last component of its path: the parent directory's
// name, which depends on where the repository was cloned ("swift-asyncio", "main", ...).
let parentIdentity = String(
    Context.packageDirectory.split(separator: "/").dropLast().last ?? "swift-asyncio"
).lowercased()

let package = Package(
    name: "swift-asyncio-benchmarks",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "loop-bench", targets: ["LoopBench"]),
        .executable(name: "nio-echo-server", targets: ["NIOEchoServer"]),
        .executable(name: "nio-udp-echo-server", targets: ["NIOUDPEchoServer"]),
        .executable(name: "nio-tls-echo-server", targets: ["NIOTLSEchoServer"]),
        .executable(name: "streams-echo-server", targets: ["StreamsEchoServer"]),
        .executable(name: "sendfile-server", targets: ["SendfileServer"]),
    ],
    dependencies: [
        .package(path: ".."),
        // Only for nio-echo-server and nio-udp-echo-server, the references in the echo
        // benchmarks (run-echo-bench.sh, run-udp-bench.sh).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Only for nio-tls-echo-server, the reference of the TLS benchmarks (run-tls-bench.sh,
        // tls-callgrind.sh).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // package-benchmark, for the suites in Benchmarks/ and their thresholds. The
        // MallocInterposer trait counts allocations (no jemalloc needed on Swift 6.3); naming
        // it alone also leaves out the default RuntimeInterposer trait, whose package is not
        // needed for the metrics used here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The loop micro-benchmarks' bodies, run by loop-bench and by LoopBenchmarks.
        .target(
            name: "LoopBenchmarkBodies",
            dependencies: [.product(name: "AsyncIO", package: parentIdentity)],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("InternalImportsByDefault"),
            ]
        ),
        // Whether perf_event_open counts instructions here (BenchmarkSettings).
        .target(name: "CPerfProbe"),
        // What the package-benchmark suites share: their metrics and tolerances.
        .target(
            name: "BenchmarkSettings",
            dependencies: ["CPerfProbe", .product(name: "Benchmark", package: "benchmark")],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("InternalImportsByDefault"),
            ]
        ),
        .executableTarget(
            name: "LoopBenchmarks",
            dependencies: [
                "LoopBenchmarkBodies",
                "BenchmarkSettings",
                .product(name: "AsyncIO", package: parentIdentity),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/LoopBenchmarks",
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
            ],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "EchoBenchmarks",
            dependencies: [
                "BenchmarkSettings",
                .product(name: "AsyncIO", package: parentIdentity),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/EchoBenchmarks",
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
            ],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "LoopBench",
            dependencies: [
                "LoopBenchmarkBodies",
                .product(name: "AsyncIO", package: parentIdentity),
            ],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("InternalImportsByDefault"),
            ]
        ),
        .executableTarget(
            name: "StreamsEchoServer",
            dependencies: [.product(name: "AsyncIO", package: parentIdentity)],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("InternalImportsByDefault"),
            ]
        ),
        .executableTarget(
            name: "SendfileServer",
            dependencies: [.product(name: "AsyncIO", package: parentIdentity)],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("InternalImportsByDefault"),
            ]
        ),
        .executableTarget(
            name: "NIOEchoServer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
            ]
        ),
        .executableTarget(
            name: "NIOTLSEchoServer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
            ]
        ),
        .executableTarget(
            name: "NIOUDPEchoServer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
