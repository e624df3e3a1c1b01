// A SwiftNIO UDP echo server: the reference the UDP benchmarks compare swift-asyncio's
// udp-echo-server with.
//
//   nio-udp-echo-server [--host 127.0.0.1] [--port 0] [--threads 1]
//
// Prints `listening on HOST:PORT` on stdout once bound, sends every datagram back to its
// sender (the AddressedEnvelope it read, written as it is), and exits normally (so valgrind
// tools write their output) on SIGTERM or SIGINT. One event-loop thread by default.
//
// The channel reads with a fixed 64 KiB receive allocator: NIO's default for datagram
// channels is a 2 KiB one (FixedSizeRecvByteBufferAllocator(capacity: 2048)), which would
// truncate larger datagrams, so that the servers compared all take any datagram up to 64 KiB.
// One datagram per read (no vector reads), as the other servers do.

import Dispatch
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes back each datagram to where it came from; flushes once per read burst.
final class UDPEchoHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An ICMP error for an earlier datagram (the sender went away): keep serving.
    }
}

/// Writes to standard error without touching C's `stderr` global (not concurrency-safe).
func printError(_ message: String) {
    var message = message + "\n"
    message.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

func usage() -> Never {
    printError("usage: nio-udp-echo-server [--host H] [--port P] [--threads N]")
    exit(2)
}

var host = "127.0.0.1"
var port = 0
var threads = 1
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { usage() }
    switch flag {
    case "--host": host = value
    case "--port": port = Int(value) ?? { usage() }()
    case "--threads": threads = Int(value) ?? { usage() }()
    default: usage()
    }
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let bootstrap = DatagramBootstrap(group: group)
    .channelOption(.socketOption(.so_reuseaddr), value: 1)
    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
    .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(UDPEchoHandler())
        }
    }

let server: any Channel
do {
    server = try bootstrap.bind(host: host, port: port).wait()
} catch {
    printError("nio-udp-echo-server: bind failed: \(error)")
    exit(1)
}

/// SIGTERM/SIGINT close the channel; main then shuts the group down and returns. A function,
/// so that the handler closure is not main-actor isolated (it runs on a dispatch queue).
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

print("listening on \(host):\(server.localAddress?.port ?? port)")
fflush(nil)  // all C streams: stdout is a pipe or file when a benchmark script reads it

try? server.closeFuture.wait()
try? group.syncShutdownGracefully()
_ = signalSources
