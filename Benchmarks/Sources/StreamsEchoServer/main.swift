// An echo server written with swift-asyncio's streams API, the counterpart of asyncio's
// `start_server` echo (py_echo_server.py --api streams) in the echo benchmarks.
//
//   streams-echo-server [--host 127.0.0.1] [--port 0] [--unix PATH] [--reuse | --iterate]
//       [--buffer BYTES] [--cert PEM --key PEM]   (TLS: the streams over TLS)
//
// Each connection is a task on the loop: `read(max: 65536)`, `write`, `await drain()`, until
// EOF; with --reuse, `read(into:)` a 64 KiB buffer (--buffer sets the size of either) the
// connection keeps (no allocation); with
// --iterate, `for try await chunk in reader`. Prints `listening on HOST:PORT` (or `listening on unix:PATH`) on stdout, flushed, and
// exits normally on SIGTERM or SIGINT. One loop, on the main thread, as asyncio has.

import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

func printError(_ message: String) {
    _ = (message + "\n").withCString { write(2, $0, strlen($0)) }
}

func usage() -> Never {
    printError("usage: streams-echo-server [--host H] [--port P] [--unix PATH] [--reuse | --iterate] [--buffer BYTES] [--cert PEM --key PEM]")
    exit(2)
}

var host = "127.0.0.1"
var port = 0
var unixPath: String? = nil
var certificate: String? = nil
var key: String? = nil
var reuse = false
var iterate = false
var bufferSize = 65536
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    if flag == "--reuse" || flag == "--iterate" {
        if flag == "--reuse" { reuse = true } else { iterate = true }
        continue
    }
    guard let value = arguments.popFirst() else { usage() }
    switch flag {
    case "--host": host = value
    case "--port":
        guard let number = Int(value) else { usage() }
        port = number
    case "--unix": unixPath = value
    case "--buffer":
        guard let number = Int(value), number > 0 else { usage() }
        bufferSize = number
    case "--cert": certificate = value
    case "--key": key = value
    default: usage()
    }
}

let readSize = bufferSize

@Sendable func echo(_ reader: StreamReader, _ writer: StreamWriter) async throws {
    while true {
        let bytes = try await reader.read(max: readSize)
        if bytes.isEmpty { break }
        writer.write(bytes)
        try await writer.drain()
    }
}

@Sendable func echoReusingBuffer(_ reader: StreamReader, _ writer: StreamWriter) async throws {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readSize, alignment: 16)
    defer { buffer.deallocate() }
    while true {
        let count = try await reader.read(into: buffer)
        if count == 0 { break }
        writer.write(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
        try await writer.drain()
    }
}

@Sendable func echoIterating(_ reader: StreamReader, _ writer: StreamWriter) async throws {
    for try await chunk in reader {
        writer.write(chunk)
        try await writer.drain()
    }
}

let handler = reuse ? echoReusingBuffer : (iterate ? echoIterating : echo)
let (listenHost, listenPort, listenPath) = (host, port, unixPath)
guard (certificate == nil) == (key == nil) else { usage() }
let tlsFiles = certificate.flatMap { certificate in key.map { (certificate, $0) } }
do {
    let tls = try tlsFiles.map { try TLSContext.server(certificateChain: $0.0, privateKey: $0.1) }
    try EventLoop.run { loop in
        let server: Server
        if let listenPath {
            server = try await loop.startUnixServer(path: listenPath, tls: tls, backlog: 4096, handler)
            print("listening on unix:\(listenPath)")
        } else {
            server = try await loop.startServer(host: listenHost, port: listenPort, tls: tls, backlog: 4096, handler)
            print("listening on \(server.addresses[0])")
        }
        fflush(nil)

        let stop = Future<Int32>(loop: loop)
        for signal in [SIGINT, SIGTERM] {
            try loop.addSignalHandler(signal) { if !stop.isDone { try stop.setResult(signal) } }
        }
        _ = try await stop.value
        server.close()
        server.abortClients()
    }
} catch {
    printError("streams-echo-server: error: \(error)")
    exit(1)
}
