// A SwiftNIO echo server: the reference the echo benchmarks compare swift-asyncio with.
//
//   nio-echo-server [--host 127.0.0.1] [--port 0] [--unix PATH] [--threads 1] [--async-channel]
//
// --async-channel: the async/await form NIO teaches (NIOAsyncChannel): a task per connection
// that iterates `inbound` with `for try await` and writes each buffer to `outbound`, the
// counterpart of swift-asyncio's streams servers.
//
// Prints `listening on HOST:PORT` (or `listening on unix:PATH`) on stdout once bound, echoes
// every byte it reads, and exits normally (so valgrind tools write their output) on SIGTERM
// or SIGINT. One event-loop thread by default, like the single-threaded asyncio loops it is
// compared with.

import Dispatch
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes back what it reads; flushes once per read burst so writes can be gathered.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Writes to standard error without touching C's `stderr` global (not concurrency-safe).
func printError(_ message: String) {
    var message = message + "\n"
    message.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

func usage() -> Never {
    printError("usage: nio-echo-server [--host H] [--port P] [--unix PATH] [--threads N] [--async-channel]")
    exit(2)
}

/// Where the async server's task leaves its error for the main thread.
final class ErrorBox: @unchecked Sendable {
    var error: (any Error)?
}

/// The NIOAsyncChannel server: binds, prints the `listening on` line, serves until SIGTERM or
/// SIGINT closes the listening channel, then returns once every connection has ended.
func serveWithAsyncChannels(group: MultiThreadedEventLoopGroup, host: String, port: Int, unixPath: String?) async throws {
    let bootstrap = ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 4096)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    let initializer: @Sendable (any Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> = { channel in
        channel.eventLoop.makeCompletedFuture {
            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
        }
    }
    let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    if let unixPath {
        unlink(unixPath)
        server = try await bootstrap.bind(unixDomainSocketPath: unixPath, childChannelInitializer: initializer)
        print("listening on unix:\(unixPath)")
    } else {
        server = try await bootstrap.bind(host: host, port: port, childChannelInitializer: initializer)
        print("listening on \(host):\(server.channel.localAddress?.port ?? port)")
    }
    fflush(nil)
    try await withThrowingDiscardingTaskGroup { connections in
        try await server.executeThenClose { inbound in
            for try await connection in inbound {
                connections.addTask {
                    try? await connection.executeThenClose { inbound, outbound in
                        for try await buffer in inbound {
                            try await outbound.write(buffer)
                        }
                    }
                }
            }
        }
    }
    if let unixPath { unlink(unixPath) }
}

/// SIGTERM/SIGINT cancel the async server's task: its `for try await` loops end (closing the
/// listening channel does not end the inbound sequence of a server NIOAsyncChannel).
func cancelOnTermination(_ task: Task<Void, Never>) -> [any DispatchSourceSignal] {
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let queue = DispatchQueue(label: "signals")
    return [SIGTERM, SIGINT].map { number in
        let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
        source.setEventHandler { task.cancel() }
        source.resume()
        return source
    }
}

var host = "127.0.0.1"
var port = 0
var unixPath: String? = nil
var threads = 1
var asyncChannel = false
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    if flag == "--async-channel" {
        asyncChannel = true
        continue
    }
    guard let value = arguments.popFirst() else { usage() }
    switch flag {
    case "--host": host = value
    case "--port": port = Int(value) ?? { usage() }()
    case "--unix": unixPath = value
    case "--threads": threads = Int(value) ?? { usage() }()
    default: usage()
    }
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
if asyncChannel {
    // Top-level code stays synchronous (the callback server below uses `wait()`): run the
    // async server in a task and block this thread until it is done.
    let done = DispatchSemaphore(value: 0)
    let failure = ErrorBox()
    let server = Task.detached { [host, port, unixPath] in   // detached: not on the main actor, whose thread waits below
        do {
            try await serveWithAsyncChannels(group: group, host: host, port: port, unixPath: unixPath)
        } catch is CancellationError {
            // SIGTERM or SIGINT: a normal end.
        } catch {
            failure.error = error   // read after done.wait(): the semaphore orders it
        }
        done.signal()
    }
    let signalSources = cancelOnTermination(server)
    done.wait()
    _ = signalSources
    try? group.syncShutdownGracefully()
    if let error = failure.error {
        printError("nio-echo-server: \(error)")
        exit(1)
    }
    exit(0)
}
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(EchoHandler())
        }
    }

let server: any Channel
do {
    if let unixPath {
        unlink(unixPath)
        server = try bootstrap.bind(unixDomainSocketPath: unixPath).wait()
    } else {
        server = try bootstrap.bind(host: host, port: port).wait()
    }
} catch {
    printError("nio-echo-server: bind failed: \(error)")
    exit(1)
}

/// SIGTERM/SIGINT close the listening channel; main then shuts the group down and returns.
/// A function rather than top-level code, so that the handler closure is not main-actor
/// isolated (it runs on a dispatch queue).
func closeOnTermination(_ server: any Channel) -> [any DispatchSourceSignal] {
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let queue = DispatchQueue(label: "signals")
    return [SIGTERM, SIGINT].map { number in
        let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
        source.setEventHandler { server.close(promise: nil) }
        source.resume()
        return source
    }
}
let signalSources = closeOnTermination(server)

if let unixPath {
    print("listening on unix:\(unixPath)")
} else {
    print("listening on \(host):\(server.localAddress?.port ?? port)")
}
fflush(nil)  // all C streams: stdout is a pipe or file when a benchmark script reads it

try? server.closeFuture.wait()
try? group.syncShutdownGracefully()
if let unixPath { unlink(unixPath) }
_ = signalSources
