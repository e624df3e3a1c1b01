//===----------------------------------------------------------------------===//
// swift-asyncio — sockets made elsewhere (asyncio's `sock=`): made with raw Glibc calls,
// adopted by createServer / createConnection / createUnix… / connectAcceptedSocket /
// createDatagramEndpoint, and exercised by Python peers; sockets of the wrong kind refused.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// A plain blocking socket, as another library would make it (no O_NONBLOCK, no CLOEXEC).
func rawSocket(_ family: Int32, _ type: Int32) throws -> Int32 {
    let fd = socket(family, type, 0)
    guard fd >= 0 else { throw TransportError(errno: errno, syscall: "socket") }
    return fd
}

/// Binds `fd` to 127.0.0.1 port 0 and returns the port.
func bindLoopback(_ fd: Int32) throws -> Int {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
        }
    }
    guard ok else { throw TransportError(errno: errno, syscall: "bind") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Binds `fd` to the Unix path or abstract name `path` (sockaddr_un filled by hand; an
/// abstract name's length counts only its bytes).
func bindUnix(_ fd: Int32, _ path: [UInt8]) throws {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (path.first == 0 ? 0 : 1))
    let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    guard rc == 0 else { throw TransportError(errno: errno, syscall: "bind") }
}

/// Whether `fd` is open, non-blocking and close-on-exec, as the kernel has it.
func isNonBlockingCloseOnExec(_ fd: Int32) -> Bool {
    let flags = fcntl(fd, F_GETFL)
    let descriptorFlags = fcntl(fd, F_GETFD)
    return flags >= 0 && flags & O_NONBLOCK != 0 && descriptorFlags >= 0 && descriptorFlags & FD_CLOEXEC != 0
}

/// Starts `python3 -c script arguments…` with stdout on a pipe.
func startPython(_ loop: EventLoop, _ script: String, _ arguments: [String] = []) async throws -> AsyncIO.Process {
    try await loop.createSubprocessExec("python3", ["-c", script] + arguments, stdout: .pipe, stderr: .pipe)
}

/// Waits for a Python peer to end; its stdout, and its stderr in the failure message.
func finishPython(_ python: AsyncIO.Process) async throws -> (code: Int32, stdout: String) {
    let output = try await python.communicate()
    let code = try await python.wait()
    if code != 0 { Issue.record("python exited \(code): \(String(decoding: output.stderr, as: UTF8.self))") }
    return (code, String(decoding: output.stdout, as: UTF8.self))
}

/// Sends 200 KiB of a pattern, half-closes, and prints whether the echo came back exactly.
let pythonEchoCheck = """
    import socket, sys
    payload = bytes((i * 7 + 3) % 256 for i in range(200 * 1024))
    def check(s):
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        print("exact" if bytes(got) == payload else "differs: %d bytes" % len(got), flush=True)

    """

/// Writes `message`, half-closes, and waits until the peer (an echo that closes after EOF)
/// is done: what `client` received is then the whole echo.
func sendAndAwaitEcho(_ message: [UInt8], over transport: any StreamTransport, _ client: RecordingProtocol) async throws {
    transport.write(message)
    transport.writeEOF()
    try await waitForEvent(client.lost, "the echo and the peer's close")
}

/// Echoes and closes after the peer's EOF once the echo is flushed.
final class EchoUntilEOF: StreamProtocol, @unchecked Sendable {
    var transport: (any StreamTransport)?
    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) { transport?.write(bytes) }
    func eofReceived() -> Bool { false }
    func connectionLost(_ error: (any Error)?) { transport = nil }   // no cycle left behind
}

@Suite(.timeLimit(.minutes(10)))
struct AdoptedSocketTests {
    // A listening TCP socket made with plain Glibc calls serves through createServer(sock:):
    // a Python client's 200 KiB come back exactly; the server made the fd non-blocking and
    // close-on-exec, and closing the server closes it.
    @Test func createServerAdoptsARawListeningSocket() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                let fd = try rawSocket(AF_INET, Int32(SOCK_STREAM.rawValue))
                let port = try bindLoopback(fd)
                #expect(listen(fd, 16) == 0)
                let server = try await loop.createServer(sock: fd) { EchoUntilEOF() }
                #expect(server.addresses == [try SocketAddress(ipAddress: "127.0.0.1", port: port)])
                #expect(isNonBlockingCloseOnExec(fd))
                let python = try await startPython(loop, pythonEchoCheck + """
                    check(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
                    """, ["\(port)"])
                let result = try await finishPython(python)
                #expect(result.stdout == "exact\n")
                server.close()
                #expect(fcntl(fd, F_GETFD) == -1 && errno == EBADF)   // the server closed it
            }
        }
    }

    // Several listening sockets (as systemd passes them) make one Server with an address
    // each; a Python client is echoed exactly on both.
    @Test func oneServerServesSeveralAdoptedSockets() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                var ports: [Int] = []
                var fds: [Int32] = []
                for _ in 0..<2 {
                    let fd = try rawSocket(AF_INET, Int32(SOCK_STREAM.rawValue))
                    ports.append(try bindLoopback(fd))
                    #expect(listen(fd, 8) == 0)
                    fds.append(fd)
                }
                let server = try await loop.createServer(sockets: fds) { EchoUntilEOF() }
                defer { server.close() }
                #expect(server.addresses.map(\.port) == ports)
                #expect(server.socketDescriptors == fds)
                let python = try await startPython(loop, pythonEchoCheck + """
                    for port in sys.argv[1:]:
                        check(socket.create_connection(("127.0.0.1", int(port))))
                    """, ports.map(String.init))
                let result = try await finishPython(python)
                #expect(result.stdout == "exact\nexact\n")
            }
        }
    }

    // A bound socket that does not listen yet is made to listen (asyncio does the same), and
    // a Unix listening socket works with createUnixServer(sock:) against a Python AF_UNIX
    // client; the server leaves the socket file alone (it did not make it).
    @Test func boundSocketListensAndUnixServerAdopts() throws {
        let directory = "/tmp/aio-adopt-\(getpid())"
        mkdir(directory, 0o700)
        let path = "\(directory)/s"
        defer { unlink(path); rmdir(directory) }
        try withLoop { loop in
            try loop.runUntilComplete {
                let tcp = try rawSocket(AF_INET, Int32(SOCK_STREAM.rawValue))
                let port = try bindLoopback(tcp)
                let server = try await loop.createServer(sock: tcp, backlog: 8) { EchoUntilEOF() }
                defer { server.close() }
                #expect(kernelInt(tcp, SOL_SOCKET, SO_ACCEPTCONN) == 1)

                let unix = try rawSocket(AF_UNIX, Int32(SOCK_STREAM.rawValue))
                try bindUnix(unix, Array(path.utf8))
                #expect(listen(unix, 8) == 0)
                let unixServer = try await loop.createUnixServer(sock: unix) { EchoUntilEOF() }
                let python = try await startPython(loop, pythonEchoCheck + """
                    check(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
                    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    u.connect(sys.argv[2])
                    check(u)
                    """, ["\(port)", path])
                let result = try await finishPython(python)
                #expect(result.stdout == "exact\nexact\n")
                unixServer.close()
                var info = stat()
                #expect(lstat(path, &info) == 0)   // still there: the caller's file
            }
        }
    }

    // createConnection(sock:) takes a socket connected with a blocking Glibc connect to a
    // Python echo server; the bytes come back exactly and TCP_NODELAY is on.
    @Test func createConnectionAdoptsAConnectedSocket() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                let python = try await startPython(loop, """
                    import socket
                    listener = socket.create_server(("127.0.0.1", 0))
                    print(listener.getsockname()[1], flush=True)
                    connection, _ = listener.accept()
                    while True:
                        chunk = connection.recv(65536)
                        if not chunk:
                            break
                        connection.sendall(chunk)
                    connection.close()
                    """)
                let line = try await #require(python.stdout).readLine()
                let port = try #require(Int(String(decoding: line.dropLast(), as: UTF8.self)))
                let fd = try rawSocket(AF_INET, Int32(SOCK_STREAM.rawValue))
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                let rc = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                #expect(rc == 0)
                let (transport, client) = try await loop.createConnection(sock: fd) { RecordingProtocol(loop: loop) }
                #expect(isNonBlockingCloseOnExec(fd))
                #expect(try transport.option(.tcpNoDelay) == true)
                #expect(transport.peerAddress == (try SocketAddress(ipAddress: "127.0.0.1", port: port)))
                let message = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
                try await sendAndAwaitEcho(message, over: transport, client)
                #expect(client.received == message)
                _ = try await finishPython(python)
            }
        }
    }

    // connectAcceptedSocket takes the server's side of a connection accepted with a plain
    // accept(2) from a Python client: the echo is exact.
    @Test func connectAcceptedSocketServesARawAcceptedConnection() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                let listener = try rawSocket(AF_INET, Int32(SOCK_STREAM.rawValue))
                defer { close(listener) }
                let port = try bindLoopback(listener)
                #expect(listen(listener, 4) == 0)
                let python = try await startPython(loop, pythonEchoCheck + """
                    check(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
                    """, ["\(port)"])
                let readable = Future<Void>(loop: loop)
                try loop.addReader(listener) { readable.complete(.success(())) }
                try await waitForEvent(readable, "the Python client connecting")
                loop.removeReader(listener)
                let fd = accept(listener, nil, nil)
                #expect(fd >= 0)
                let (transport, _) = try await loop.connectAcceptedSocket(sock: fd) { EchoUntilEOF() }
                #expect(transport.localAddress == (try SocketAddress(ipAddress: "127.0.0.1", port: port)))
                let result = try await finishPython(python)
                #expect(result.stdout == "exact\n")
            }
        }
    }

    // The two ends of a Unix socketpair: one adopted by createUnixConnection(sock:), the
    // other by connectAcceptedSocket; bytes cross both ways exactly.
    @Test func socketpairEndsTalkThroughBothCalls() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                var pair: [Int32] = [0, 0]
                #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
                let (server, _) = try await loop.connectAcceptedSocket(sock: pair[0]) { EchoUntilEOF() }
                let (client, proto) = try await loop.createUnixConnection(sock: pair[1]) { RecordingProtocol(loop: loop) }
                let message = Array("through a socketpair\n".utf8)
                try await sendAndAwaitEcho(message, over: client, proto)
                #expect(proto.received == message)
                #expect(server.isClosing)
            }
        }
    }

    // TLS over adopted sockets, both roles: the two ends of a socketpair, one taken by
    // connectAcceptedSocket with a server context (its handshake runs as the server), the other
    // by createUnixConnection(sock:) with a client context; the echo is exact and encrypted
    // (a TLS version is negotiated). A client context on the accepted side is refused, and
    // that fd, already taken, is closed.
    @Test func tlsRunsOverAdoptedSocketsInBothRoles() throws {
        let serverContext = try TLSContext(serverConfiguration())
        let clientContext = try TLSContext(clientConfiguration())
        try withLoop { loop in
            try loop.runUntilComplete {
                var pair: [Int32] = [0, 0]
                #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
                let serverSide = Box<(any StreamTransport)?>(nil)
                let serverFD = pair[0]
                let accepted = loop.createTask {
                    serverSide.value = try await loop.connectAcceptedSocket(sock: serverFD, tls: serverContext) { EchoUntilEOF() }.0
                }
                let (client, proto) = try await loop.createUnixConnection(
                    sock: pair[1], tls: clientContext, serverHostname: "localhost") { RecordingProtocol(loop: loop) }
                try await accepted.value
                let server = try #require(serverSide.value)
                #expect(client.tlsInfo?.version.hasPrefix("TLSv1.") == true)
                #expect(server.tlsInfo?.version == client.tlsInfo?.version)
                // Options of a TLS transport are its socket's.
                try client.setOption(.sendBufferSize, 32768)
                #expect(try client.option(.sendBufferSize) == 65536)
                #expect(kernelInt(pair[1], SOL_SOCKET, SO_SNDBUF) == 65536)
                let message = payload(50_000)
                client.write(message)
                try await waitForEvent(proto.whenReceived(atLeast: message.count), "the echo over TLS")
                #expect(proto.received == message)
                #expect(client.canWriteEOF)   // TLS 1.3
                client.writeEOF()   // close_notify; the server closes after its echo
                try await waitForEvent(proto.lost, "the server's close")
                #expect(server.isClosing)

                var other: [Int32] = [0, 0]
                #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &other) == 0)
                defer { close(other[1]) }
                await #expect(throws: TLSError(.configuration, "an accepted connection needs a server TLSContext")) {
                    _ = try await loop.connectAcceptedSocket(sock: other[0], tls: clientContext) { EchoUntilEOF() }
                }
                #expect(fcntl(other[0], F_GETFD) == -1 && errno == EBADF)
            }
        }
    }

    // A UDP socket bound with Glibc serves through createDatagramEndpoint(sock:): a Python
    // client's datagram comes back exactly from the same address.
    @Test func createDatagramEndpointAdoptsARawUDPSocket() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                let fd = try rawSocket(AF_INET, Int32(SOCK_DGRAM.rawValue))
                let port = try bindLoopback(fd)
                let (endpoint, echo) = try await loop.createDatagramEndpoint(sock: fd) { DatagramEcho() }
                defer { endpoint.close() }
                #expect(endpoint.localAddress == (try SocketAddress(ipAddress: "127.0.0.1", port: port)))
                #expect(endpoint.peerAddress == nil)
                #expect(isNonBlockingCloseOnExec(fd))
                let python = try await startPython(loop, """
                    import socket, sys
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.settimeout(10)
                    payload = bytes(range(256)) * 4
                    s.sendto(payload, ("127.0.0.1", int(sys.argv[1])))
                    data, source = s.recvfrom(2048)
                    print("exact" if data == payload and source[1] == int(sys.argv[1]) else "differs")
                    """, ["\(port)"])
                let result = try await finishPython(python)
                #expect(result.stdout == "exact\n")
                #expect(echo.received == 1)
            }
        }
    }

    // Sockets of the wrong kind are refused with .invalidSocket saying what they are, and the
    // fd is left open, still the caller's.
    @Test func wrongKindsOfSocketAreRefusedAndLeftOpen() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                let udp = try rawSocket(AF_INET, Int32(SOCK_DGRAM.rawValue))
                let tcp = try rawSocket(AF_INET, Int32(SOCK_STREAM.rawValue))
                let listening = try rawSocket(AF_INET, Int32(SOCK_STREAM.rawValue))
                _ = try bindLoopback(listening)
                #expect(listen(listening, 1) == 0)
                var pair: [Int32] = [0, 0]
                #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
                var pipeFDs: [Int32] = [0, 0]
                #expect(pipe(&pipeFDs) == 0)
                let all = [udp, tcp, listening, pair[0], pair[1], pipeFDs[0], pipeFDs[1]]
                defer { for fd in all { close(fd) } }

                func refused(_ message: String, errno: Int32 = 0) -> TransportError {
                    TransportError(.invalidSocket, message, errno: errno)
                }
                await #expect(throws: refused("createServer(sock:): fd \(udp) is a datagram socket, not a stream socket")) {
                    _ = try await loop.createServer(sock: udp) { EchoUntilEOF() }
                }
                await #expect(throws: refused("createUnixServer(sock:): fd \(listening) is an AF_INET socket, not AF_UNIX")) {
                    _ = try await loop.createUnixServer(sock: listening) { EchoUntilEOF() }
                }
                await #expect(throws: refused("createServer(sock:): fd \(pair[0]) is a connected socket, not a listening one")) {
                    _ = try await loop.createServer(sock: pair[0]) { EchoUntilEOF() }
                }
                await #expect(throws: refused("createConnection(sock:): fd \(listening) is a listening socket, not a connected one")) {
                    _ = try await loop.createConnection(sock: listening) { RecordingProtocol(loop: loop) }
                }
                await #expect(throws: refused("connectAcceptedSocket(sock:): fd \(tcp) is not connected")) {
                    _ = try await loop.connectAcceptedSocket(sock: tcp) { RecordingProtocol(loop: loop) }
                }
                await #expect(throws: refused("createUnixConnection(sock:): fd \(tcp) is an AF_INET socket, not AF_UNIX")) {
                    _ = try await loop.createUnixConnection(sock: tcp) { RecordingProtocol(loop: loop) }
                }
                await #expect(throws: refused("createDatagramEndpoint(sock:): fd \(tcp) is a stream socket, not a datagram socket")) {
                    _ = try await loop.createDatagramEndpoint(sock: tcp) { DatagramEcho() }
                }
                await #expect(throws: refused("createConnection(sock:): fd \(pipeFDs[0]) is not an open socket: socket operation on non-socket", errno: ENOTSOCK)) {
                    _ = try await loop.createConnection(sock: pipeFDs[0]) { RecordingProtocol(loop: loop) }
                }
                await #expect(throws: refused("createServer(sock:): fd -1 is not an open socket: bad file descriptor", errno: EBADF)) {
                    _ = try await loop.createServer(sock: -1) { EchoUntilEOF() }
                }
                await #expect(throws: refused("createServer(sockets:): fd \(udp) is a datagram socket, not a stream socket")) {
                    _ = try await loop.createServer(sockets: [listening, udp]) { EchoUntilEOF() }
                }
                for fd in all {
                    #expect(fcntl(fd, F_GETFD) >= 0, "fd \(fd) was closed")
                    #expect(fcntl(fd, F_GETFL) & O_NONBLOCK == 0, "fd \(fd) was changed")
                }
            }
        }
    }
}
