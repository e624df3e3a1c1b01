//===----------------------------------------------------------------------===//
// swift-asyncio — Socket coroutines (sockRecv, sockSendAll, sockAccept, …) against Python.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking, close-on-exec socket (what the socket calls need; `rawSocket` is blocking).
func nonBlockingSocket(_ family: Int32 = AF_INET, _ type: Int32 = Int32(SOCK_STREAM.rawValue)) throws -> Int32 {
    try rawSocket(family, type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
}

/// A non-blocking socket of `type` bound to 127.0.0.1 on a free port, and that port.
private func boundSocket(_ type: Int32 = Int32(SOCK_STREAM.rawValue)) throws -> (Int32, Int) {
    let fd = try nonBlockingSocket(AF_INET, type)
    let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
    try Socket.bind(fd, address)
    return (fd, try #require(Socket.localAddress(fd)?.port))
}

/// Whether the loop watches `fd` for reading.
private func hasReader(_ loop: EventLoop, _ fd: Int32) -> Bool {
    loop.registrations.indices.contains(Int(fd)) && loop.registrations[Int(fd)].reader != nil
}

/// A connected pair of Unix stream sockets.
private func socketPair(nonBlocking: Bool) throws -> [Int32] {
    var pair: [Int32] = [-1, -1]
    let type = Int32(SOCK_STREAM.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
    guard socketpair(AF_UNIX, type, 0, &pair) == 0 else { throw TransportError(errno: errno, syscall: "socketpair") }
    return pair
}

/// `count` bytes that are not a short repeat (so a lost or reordered chunk shows).
func pattern(_ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 10) }
}

/// Starts `script` in Python (`startPython`); its first stdout line is a port, returned with
/// the process.
private func startPythonOnPort(_ loop: EventLoop, _ script: String, _ arguments: [String] = []) async throws -> (Process, Int) {
    let process = try await startPython(loop, script, arguments)
    let line = try await process.stdout?.readLine() ?? []
    let port = Int(String(decoding: line.filter { $0 != 10 }, as: UTF8.self)) ?? 0
    return (process, port)
}

/// A Python server that echoes one connection until EOF, then closes it.
private let pythonEchoServer = """
import socket, sys
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
connection, _ = server.accept()
while True:
    data = connection.recv(65536)
    if not data:
        break
    connection.sendall(data)
connection.close()
"""

@Suite(.timeLimit(.minutes(10)))
struct SocketCallsTests {
    // sockConnect, then 1 MiB out with sockSendAll while another task reads the echo with
    // sockRecv on the same fd (the reader and writer directions wait independently); the
    // echo comes back byte for byte, then EOF as [].
    @Test func connectSendAllAndRecvAgainstAPythonEchoServer() throws {
        try withLoop { loop in
            let sent = pattern(1 << 20)
            let received = try loop.runUntilComplete { () async throws -> [UInt8] in
                let (python, port) = try await startPythonOnPort(loop, pythonEchoServer)
                let fd = try nonBlockingSocket()
                defer { close(fd) }
                try await loop.sockConnect(fd, to: SocketAddress(ipAddress: "127.0.0.1", port: port))
                let reader = loop.createTask { () async throws -> [UInt8] in
                    var all: [UInt8] = []
                    while true {
                        let chunk = try await loop.sockRecv(fd, max: 65536)
                        if chunk.isEmpty { return all }
                        all += chunk
                    }
                }
                try await loop.sockSendAll(fd, sent)
                shutdown(fd, Int32(SHUT_WR))
                let echoed = try await reader.value
                let (_, stderr) = try await python.communicate()
                #expect(python.returnCode == 0, "\(String(decoding: stderr, as: UTF8.self))")
                return echoed
            }
            #expect(received.count == sent.count)
            #expect(received == sent)
        }
    }

    // sockAccept takes a Python client's connection (a non-blocking socket, with the peer's
    // address); sockRecv(into:) reads its bytes exactly, then 0 at EOF.
    @Test func acceptAndRecvIntoFromAPythonClient() throws {
        try withLoop { loop in
            let (listener, port) = try boundSocket()
            defer { close(listener) }
            #expect(listen(listener, 8) == 0)
            let (bytes, peerHost, nonBlocking) = try loop.runUntilComplete {
                () async throws -> ([UInt8], String?, Bool) in
                let python = loop.createTask {
                    try await loop.runProcess("python3", ["-c", """
                    import socket, sys
                    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                    s.sendall(b"hello from python\\n" * 1000)
                    s.close()
                    """, "\(port)"])
                }
                let (fd, address) = try await loop.sockAccept(listener)
                defer { close(fd) }
                var all: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 1000)
                while true {
                    let count = try await loop.sockRecv(fd, into: &buffer)
                    if count == 0 { break }
                    all += buffer[..<count]
                }
                let result = try await python.value
                #expect(result.returnCode == 0, "\(String(decoding: result.stderr, as: UTF8.self))")
                return (all, address?.host, fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
            }
            #expect(bytes == Array(String(repeating: "hello from python\n", count: 1000).utf8))
            #expect(peerHost == "127.0.0.1")
            #expect(nonBlocking)
        }
    }

    // A datagram from Python arrives with sockRecvFrom (bytes and sender), and the reply
    // sent with sockSendTo reaches Python.
    @Test func datagramsWithPython() throws {
        try withLoop { loop in
            let (fd, port) = try boundSocket(Int32(SOCK_DGRAM.rawValue))
            defer { close(fd) }
            let (datagram, reply) = try loop.runUntilComplete { () async throws -> ([UInt8], String) in
                let (python, pythonPort) = try await startPythonOnPort(loop, """
                import socket, sys
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", 0))
                s.settimeout(30)
                print(s.getsockname()[1], flush=True)
                s.sendto(b"ping \\x00\\xff", ("127.0.0.1", int(sys.argv[1])))
                data, _ = s.recvfrom(100)
                print(data.hex(), flush=True)
                """, ["\(port)"])
                let (bytes, from) = try await loop.sockRecvFrom(fd, max: 100)
                #expect(from?.port == pythonPort)
                let sent = try await loop.sockSendTo(fd, Array("pong".utf8), to: try #require(from))
                #expect(sent == 4)
                let (stdout, stderr) = try await python.communicate()
                #expect(python.returnCode == 0, "\(String(decoding: stderr, as: UTF8.self))")
                return (bytes, String(decoding: stdout, as: UTF8.self))
            }
            #expect(datagram == Array("ping ".utf8) + [0, 0xFF])
            #expect(reply == "706f6e67\n")   // "pong"
        }
    }

    // A peer that resets the connection (SO_LINGER 0, then close) makes a waiting sockRecv
    // throw .connectionReset, not return EOF.
    @Test func aResetByThePeerIsAnError() throws {
        try withLoop { loop in
            let (listener, port) = try boundSocket()
            defer { close(listener) }
            #expect(listen(listener, 1) == 0)
            try loop.runUntilComplete {
                let python = try await startPython(loop, """
                    import socket, struct, sys
                    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                    s.recv(1)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                    """, ["\(port)"])
                let (fd, _) = try await loop.sockAccept(listener)
                defer { close(fd) }
                try await loop.sockSendAll(fd, [1])   // the client resets once it has this byte
                await #expect {
                    while try await !loop.sockRecv(fd, max: 100).isEmpty {}   // EOF would end it: no error, a failure
                } throws: { ($0 as? TransportError)?.code == .connectionReset }
                _ = try await finishPython(python)
            }
        }
    }

    // Cancelling a waiting receive throws CancellationError and removes its watcher: the fd
    // can be waited on again, and the bytes sent later are all there. A loop task's own wait
    // is ended by its cancel() (covered, no handler); a plain Swift task's by its handler.
    @Test(arguments: [true, false])
    func cancellingAWaitingReceiveRemovesItsWatcher(loopTask: Bool) throws {
        try withLoop { loop in
            let pair = try socketPair(nonBlocking: true)
            defer { close(pair[0]); close(pair[1]) }
            try loop.runUntilComplete {
                if loopTask {
                    let waiting = loop.createTask { try await loop.sockRecv(pair[0], max: 100) }
                    try await waitUntil("the receive waits") { hasReader(loop, pair[0]) }
                    #expect(waiting.hasCoveredWait)
                    waiting.cancel()
                    await #expect(throws: CancellationError.self) { try await waiting.value }
                } else {
                    let waiting = Task(executorPreference: loop.taskExecutor) {
                        try await loop.sockRecv(pair[0], max: 100)
                    }
                    try await waitUntil("the receive waits") { hasReader(loop, pair[0]) }
                    waiting.cancel()
                    await #expect(throws: CancellationError.self) { try await waiting.value }
                }
                #expect(!hasReader(loop, pair[0]))
                #expect(write(pair[1], "abc", 3) == 3)
                #expect(try await loop.sockRecv(pair[0], max: 100) == Array("abc".utf8))
            }
        }
    }

    // What asyncio refuses is an error here: a blocking socket; a second receive on an fd
    // that already has a waiting reader. A refused connect names the address.
    @Test func refusedCallsAreErrors() throws {
        try withLoop { loop in
            let pair = try socketPair(nonBlocking: false)
            defer { close(pair[0]); close(pair[1]) }
            let (closedPortSocket, closedPort) = try boundSocket()
            close(closedPortSocket)   // nothing listens there now
            try loop.runUntilComplete {
                await #expect {
                    _ = try await loop.sockRecv(pair[0], max: 10)
                } throws: { ($0 as? TransportError)?.code == .invalidArgument }

                _ = fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK)
                let first = loop.createTask { try await loop.sockRecv(pair[0], max: 10) }
                try await waitUntil("the first receive waits") { hasReader(loop, pair[0]) }
                await #expect {
                    _ = try await loop.sockRecv(pair[0], max: 10)
                } throws: { error in
                    guard let error = error as? TransportError else { return false }
                    return error.code == .invalidArgument && error.message.contains("already watched for reading")
                }
                #expect(write(pair[1], "x", 1) == 1)
                #expect(try await first.value == Array("x".utf8))

                let fd = try nonBlockingSocket()
                defer { close(fd) }
                let address = try SocketAddress(ipAddress: "127.0.0.1", port: closedPort)
                await #expect {
                    try await loop.sockConnect(fd, to: address)
                } throws: { ($0 as? TransportError)?.code == .connectionRefused }
            }
        }
    }
}
