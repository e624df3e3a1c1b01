// A file server written with swift-asyncio's `sendfile`, the counterpart of the C and
// asyncio file servers in run-sendfile-bench.sh.
//
//   sendfile-server PORT FILE
//
// Each connection is a streams task that sends the whole file with `writer.sendfile(file:)`
// (sendfile(2) on the socket) and closes. Prints `listening on 127.0.0.1:PORT` on stdout,
// flushed; exits on SIGTERM or SIGINT.

import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count == 3, let port = Int(arguments[1]) else {
    _ = "usage: sendfile-server PORT FILE\n".withCString { write(2, $0, strlen($0)) }
    exit(2)
}
let path = arguments[2]

let loop = try EventLoop(name: "sendfile-server")
try loop.runUntilComplete {
    let server = try await loop.startServer(host: "127.0.0.1", port: port) { _, writer in
        let file = open(path, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { return }
        defer { close(file) }
        _ = try await writer.sendfile(file: file)
    }
    print("listening on 127.0.0.1:\(server.addresses[0].port ?? port)")
    fflush(nil)
    let stop = Future<Void>(loop: loop)
    for signal in [SIGTERM, SIGINT] {
        try loop.addSignalHandler(signal) { _ = try? stop.setResult(()) }
    }
    try await stop.value
    server.close()
}
