// A SwiftNIO echo server: the reference the echo benchmarks compare swift-asyncio with.
//
//   nio-echo-server [--host 127.0.0.1] [--port 0] [--unix PATH] [--threads 1]
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
    printError("usage: nio-echo-server [--host H] [--port P] [--unix PATH] [--threads N]")
    exit(2)
}

var host = "127.0.0.1"
var port = 0
var unixPath: String? = nil
var threads = 1
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
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
