// swift-tools-version:6.1
//
// Loop micro-benchmarks for swift-asyncio, compared with Python's asyncio and uvloop by
// run-loop-bench.sh. A package of its own so that the library's package stays free of
// benchmark targets; it builds the library from the parent directory.

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
    ],
    dependencies: [
        .package(path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "LoopBench",
            dependencies: [.product(name: "AsyncIO", package: parentIdentity)],
            swiftSettings: [
                .enableUpcomingFeature("ExistentialAny"),
                .enableUpcomingFeature("InternalImportsByDefault"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
