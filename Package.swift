// swift-tools-version:6.2
//
// swift-asyncio: asyncio's model (event loop, Futures, Tasks, transports and protocols,
// executor offload) native in Swift on Linux.
//
// Platforms: Linux only. The I/O backend is epoll (with eventfd, timerfd, signalfd, accept4
// and pipe2 through the CAsyncIOLinux shim) and the code imports Glibc, so nothing here builds
// on macOS or another BSD; CI builds and tests on Linux (x86_64) alone. There is no
// `platforms:` entry: it only sets minimum versions of Apple platforms, which this package
// does not support (Linux has no availability checks, so Synchronization's Mutex and Atomic
// need none). README.md, "Platforms", says where a kqueue backend would plug in.

//
// Optional integrations are package traits (SE-0450), off by default:
//   ServiceLifecycle  the AsyncIOServiceLifecycle product (swift-service-lifecycle)
//   Metrics           the AsyncIOMetrics product (swift-metrics)
// A dependency used only under a disabled trait is not fetched: a package that depends on
// this one with no `traits:` gets the AsyncIO library alone and clones none of them, nor
// their dependencies (swift-async-algorithms, swift-atomics); `traits: ["ServiceLifecycle"]`
// or `["Metrics"]` opts in. Checked with Swift 6.3.1 on throwaway packages, by path and by
// URL (README.md, "Optional integrations", has the evidence). Without traits, every
// dependency of a target in any library or executable product is cloned, even one the
// consumer's products do not use.
// In this repository: `swift build` and `swift test` (the README's commands) build and test
// the AsyncIO library and the examples with no integration and clone neither package; the
// integrations and their tests build with `--enable-all-traits` (or `--traits
// ServiceLifecycle,Metrics`), as .ci/run's sanitizer runs and docs step do. The tests of an
// integration depend on its packages under the same trait, so a flag-free build clones
// nothing it does not compile.

import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "swift-asyncio",
    products: [
        .library(name: "AsyncIO", targets: ["AsyncIO"]),
        // Services for swift-service-lifecycle (opt-in trait ServiceLifecycle; empty without it).
        .library(name: "AsyncIOServiceLifecycle", targets: ["AsyncIOServiceLifecycle"]),
        // The loops' counters exported to swift-metrics (opt-in trait Metrics; empty without it).
        .library(name: "AsyncIOMetrics", targets: ["AsyncIOMetrics"]),
        .executable(name: "task-sample", targets: ["TaskSample"]),
        .executable(name: "executor-sample", targets: ["ExecutorSample"]),
        .executable(name: "tcp-echo-server", targets: ["TCPEchoServer"]),
        .executable(name: "tls-echo-server", targets: ["TLSEchoServer"]),
        .executable(name: "unix-echo-server", targets: ["UnixEchoServer"]),
        .executable(name: "udp-echo-server", targets: ["UDPEchoServer"]),
        .executable(name: "pipe-echo", targets: ["PipeEcho"]),
        .executable(name: "echo-client", targets: ["EchoClient"]),
        .executable(name: "chat-server", targets: ["ChatServer"]),
    ],
    traits: [
        .trait(name: "ServiceLifecycle", description: "The AsyncIOServiceLifecycle product (swift-service-lifecycle)."),
        .trait(name: "Metrics", description: "The AsyncIOMetrics product (swift-metrics)."),
        .default(enabledTraits: []),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        // Tests of AsyncIOMetrics only (trait Metrics).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C shim for what Swift's Glibc module does not expose (epoll, eventfd, timerfd,
        // signalfd, accept4, pipe2, thread names, a signal-to-fd trampoline).
        .target(name: "CAsyncIOLinux"),
        // The system OpenSSL (libssl-dev) and static inline wrappers for its macros.
        .systemLibrary(
            name: "CAsyncIOOpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "AsyncIO",
            dependencies: [
                "CAsyncIOLinux",
                "CAsyncIOOpenSSL",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "AsyncIOServiceLifecycle",
            dependencies: [
                "AsyncIO",
                .product(name: "Logging", package: "swift-log"),
                .product(
                    name: "ServiceLifecycle", package: "swift-service-lifecycle",
                    condition: .when(traits: ["ServiceLifecycle"])),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "AsyncIOMetrics",
            dependencies: [
                "AsyncIO",
                .product(name: "CoreMetrics", package: "swift-metrics", condition: .when(traits: ["Metrics"])),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "TaskSample",
            dependencies: [
                "AsyncIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/TaskSample",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "ExecutorSample",
            dependencies: [
                "AsyncIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/ExecutorSample",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "TCPEchoServer",
            dependencies: [
                "AsyncIO",
                "AsyncIOServiceLifecycle",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(
                    name: "ServiceLifecycle", package: "swift-service-lifecycle",
                    condition: .when(traits: ["ServiceLifecycle"])),
            ],
            path: "Examples/TCPEchoServer",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "TLSEchoServer",
            dependencies: [
                "AsyncIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/TLSEchoServer",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "UnixEchoServer",
            dependencies: [
                "AsyncIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/UnixEchoServer",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "UDPEchoServer",
            dependencies: [
                "AsyncIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/UDPEchoServer",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "PipeEcho",
            dependencies: [
                "AsyncIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/PipeEcho",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "EchoClient",
            dependencies: [
                "AsyncIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/EchoClient",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "ChatServer",
            dependencies: [
                "AsyncIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/ChatServer",
            swiftSettings: strictSettings
        ),
        // Test fixture: run by ExamplesTests in a process of its own.
        .executableTarget(
            name: "LoopFDCheck",
            dependencies: ["AsyncIO"],
            path: "Tests/Fixtures/LoopFDCheck",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AsyncIOTests",
            dependencies: ["AsyncIO", "CAsyncIOLinux", "CAsyncIOOpenSSL"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AsyncIOServiceLifecycleTests",
            dependencies: [
                "AsyncIO",
                "AsyncIOServiceLifecycle",
                .product(name: "Logging", package: "swift-log"),
                .product(
                    name: "ServiceLifecycle", package: "swift-service-lifecycle",
                    condition: .when(traits: ["ServiceLifecycle"])),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AsyncIOMetricsTests",
            dependencies: [
                "AsyncIO",
                "AsyncIOMetrics",
                .product(name: "CoreMetrics", package: "swift-metrics", condition: .when(traits: ["Metrics"])),
                .product(name: "MetricsTestKit", package: "swift-metrics", condition: .when(traits: ["Metrics"])),
                .product(name: "Prometheus", package: "swift-prometheus", condition: .when(traits: ["Metrics"])),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExamplesTests",
            dependencies: [
                "TaskSample", "ExecutorSample", "TCPEchoServer", "TLSEchoServer", "UnixEchoServer", "UDPEchoServer", "PipeEcho", "EchoClient",
                "ChatServer", "LoopFDCheck",
            ],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)

// Documentation (DocC). The swift-docc-plugin dependency is added only when
// ASYNCIO_DOCS is set, so a package that depends on swift-asyncio never resolves or clones
// it (the Swift Package Index brings its own plugin, see .spi.yml). Build the docs with:
//   ASYNCIO_DOCS=1 swift package generate-documentation --target AsyncIO
// .ci/docs.sh does that for every documented target, with warnings as errors and a check that
// every public symbol has a doc comment.
if Context.environment["ASYNCIO_DOCS"] != nil {
    package.dependencies.append(
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0")
    )
}
