// A SwiftNIO + NIOSSL TLS echo server: the reference the TLS benchmarks (run-tls-bench.sh,
// tls-callgrind.sh) compare swift-asyncio's tls-echo-server with.
//
//   nio-tls-echo-server [--host 127.0.0.1] [--port 0] [--threads 1]
//                       [--cert Certificates/server.crt] [--key Certificates/server.key]
//
// NIOSSL's default server configuration (its vendored BoringSSL; TLS 1.3 and 1.2, session
// tickets on) with the certificate and key given; the load generator picks the cipher suite.
// Prints `listening on HOST:PORT` on stdout once bound, echoes every byte it decrypts with
// the classic handler (`write` in `channelRead`, `flush` in `channelReadComplete`, as
// nio-echo-server), and exits normally (so valgrind tools write their output) on SIGTERM or
// SIGINT. One event-loop thread by default, like the single-threaded loops it is compared
// with.

import Dispatch
import NIOCore
import NIOPosix
import NIOSSL

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
    printError("usage: nio-tls-echo-server [--host H] [--port P] [--threads N] [--cert PEM] [--key PEM]")
    exit(2)
}

var host = "127.0.0.1"
var port = 0
var threads = 1
var certPath = "Certificates/server.crt"
var keyPath = "Certificates/server.key"
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { usage() }
    switch flag {
    case "--host": host = value
    case "--port": port = Int(value) ?? { usage() }()
    case "--threads": threads = Int(value) ?? { usage() }()
    case "--cert": certPath = value
    case "--key": keyPath = value
    default: usage()
    }
}

let sslContext: NIOSSLContext
do {
    let chain = try NIOSSLCertificate.fromPEMFile(certPath)
    let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
    sslContext = try NIOSSLContext(configuration: .makeServerConfiguration(
        certificateChain: chain.map { .certificate($0) },
        privateKey: .privateKey(key)))
} catch {
    printError("nio-tls-echo-server: cannot load \(certPath) / \(keyPath): \(error)")
    exit(1)
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandlers(
                NIOSSLServerHandler(context: sslContext), EchoHandler())
        }
    }

let server: any Channel
do {
    server = try bootstrap.bind(host: host, port: port).wait()
} catch {
    printError("nio-tls-echo-server: bind failed: \(error)")
    exit(1)
}

/// SIGTERM/SIGINT close the listening channel; main then shuts the group down (closing the
/// connections) and returns. A function rather than top-level code, so that the handler
/// closure is not main-actor isolated (it runs on a dispatch queue).
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
