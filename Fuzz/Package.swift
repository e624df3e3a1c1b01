// swift-tools-version:6.2
//
// libFuzzer targets for swift-asyncio (issue 13). A package of its own, like Benchmarks/, so
// that `swift build` and `swift test` of the library's package stay as they are; it builds
// the library from the parent directory. Build and run with Fuzz/fuzz.sh, which passes
// `-sanitize=fuzzer,address` (libFuzzer + AddressSanitizer), `-parse-as-library` (libFuzzer
// has the `main`) and `-enable-testing` (the TLS target reaches the library's internal TLS
// layer with `@testable import`).

import PackageDescription

// A path dependency's identity is the last component of its path: the parent directory's
// name, which depends on where the repository was cloned ("swift-asyncio", "main", ...).
let parentIdentity = String(
    Context.packageDirectory.split(separator: "/").dropLast().last ?? "swift-asyncio"
).lowercased()

let settings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "swift-asyncio-fuzz",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fuzz-stream-reader", targets: ["FuzzStreamReader"]),
        .executable(name: "fuzz-address", targets: ["FuzzAddress"]),
        .executable(name: "fuzz-tls-receive", targets: ["FuzzTLSReceive"]),
        .executable(name: "fuzz-chat", targets: ["FuzzChat"]),
    ],
    dependencies: [
        .package(path: ".."),
    ],
    targets: [
        .target(name: "CFuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver"], swiftSettings: settings),
        .executableTarget(
            name: "FuzzStreamReader",
            dependencies: ["FuzzSupport", .product(name: "AsyncIO", package: parentIdentity)],
            swiftSettings: settings
        ),
        .executableTarget(
            name: "FuzzAddress",
            dependencies: ["FuzzSupport", .product(name: "AsyncIO", package: parentIdentity)],
            swiftSettings: settings
        ),
        .executableTarget(
            name: "FuzzTLSReceive",
            dependencies: ["FuzzSupport", .product(name: "AsyncIO", package: parentIdentity)],
            swiftSettings: settings
        ),
        // The chat room's source is Examples/ChatServer/ChatRoom.swift, linked into the target
        // (an example's executable target cannot be depended on).
        .executableTarget(
            name: "FuzzChat",
            dependencies: ["FuzzSupport", .product(name: "AsyncIO", package: parentIdentity)],
            swiftSettings: settings
        ),
    ],
    swiftLanguageModes: [.v6]
)
