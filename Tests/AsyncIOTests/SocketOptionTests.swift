//===----------------------------------------------------------------------===//
// swift-asyncio — typed socket options on transports, servers and datagram endpoints,
// checked against the kernel's own view (getsockopt on the fd) and against Python peers.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// The kernel's `int` value of an option, read with a plain getsockopt.
func kernelInt(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32? {
    var value: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    return getsockopt(fd, level, name, &value, &length) == 0 ? value : nil
}

/// The kernel's SO_LINGER setting (on, seconds).
func kernelLinger(_ fd: Int32) -> (on: Int32, seconds: Int32)? {
    var value = linger()
    var length = socklen_t(MemoryLayout<linger>.size)
    return getsockopt(fd, SOL_SOCKET, SO_LINGER, &value, &length) == 0 ? (value.l_onoff, value.l_linger) : nil
}

/// Reads one chunk, closes its connection at once (with SO_LINGER 0 if `reset`).
final class CloseOnData: StreamProtocol, @unchecked Sendable {
    let reset: Bool
    var transport: (any StreamTransport)?
    var setError: (any Error)?
    init(reset: Bool) { self.reset = reset }
    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {
        do {
            if reset { try transport?.setOption(.linger, .zero) }
        } catch {
            setError = error
        }
        transport?.close()
    }
}

@Suite(.timeLimit(.minutes(10)))
struct SocketOptionTests {
    // Every typed option on a TCP connection reads back through the API as set, and the
    // kernel's getsockopt on the fd agrees (buffer sizes come back doubled, as Linux does).
    @Test func tcpOptionsReadBackAsTheKernelHasThem() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                let (server, _) = try await recordingServer(loop)
                defer { server.close() }
                let (transport, _) = try await loop.createConnection(host: "127.0.0.1", port: server.addresses[0].port ?? 0) {
                    RecordingProtocol(loop: loop)
                }
                defer { transport.abort() }
                let fd = transport.fileDescriptor
                let tcp = Int32(IPPROTO_TCP)

                #expect(try transport.option(.tcpNoDelay) == true)   // our default
                try transport.setOption(.tcpNoDelay, false)
                #expect(try transport.option(.tcpNoDelay) == false)
                #expect(kernelInt(fd, tcp, TCP_NODELAY) == 0)

                try transport.setOption(.keepAlive, true)
                try transport.setOption(.keepAliveIdle, .seconds(42))
                try transport.setOption(.keepAliveInterval, .seconds(7))
                try transport.setOption(.keepAliveCount, 5)
                #expect(try transport.option(.keepAlive) == true)
                #expect(try transport.option(.keepAliveIdle) == .seconds(42))
                #expect(try transport.option(.keepAliveInterval) == .seconds(7))
                #expect(try transport.option(.keepAliveCount) == 5)
                #expect(kernelInt(fd, SOL_SOCKET, SO_KEEPALIVE) == 1)
                #expect(kernelInt(fd, tcp, TCP_KEEPIDLE) == 42)
                #expect(kernelInt(fd, tcp, TCP_KEEPINTVL) == 7)
                #expect(kernelInt(fd, tcp, TCP_KEEPCNT) == 5)

                try transport.setOption(.receiveBufferSize, 65536)
                try transport.setOption(.sendBufferSize, 32768)
                #expect(try transport.option(.receiveBufferSize) == 131072)
                #expect(try transport.option(.sendBufferSize) == 65536)
                #expect(kernelInt(fd, SOL_SOCKET, SO_RCVBUF) == 131072)
                #expect(kernelInt(fd, SOL_SOCKET, SO_SNDBUF) == 65536)

                try transport.setOption(.tcpUserTimeout, .milliseconds(1500))
                #expect(try transport.option(.tcpUserTimeout) == .milliseconds(1500))
                #expect(kernelInt(fd, tcp, TCP_USER_TIMEOUT) == 1500)

                try transport.setOption(.typeOfService, 0x10)
                #expect(try transport.option(.typeOfService) == 0x10)
                #expect(kernelInt(fd, Int32(IPPROTO_IP), IP_TOS) == 0x10)

                #expect(try transport.option(.linger) == nil)
                try transport.setOption(.linger, .seconds(3))
                #expect(try transport.option(.linger) == .seconds(3))
                #expect(kernelLinger(fd)?.on == 1 && kernelLinger(fd)?.seconds == 3)
                try transport.setOption(.linger, nil)
                #expect(try transport.option(.linger) == nil)
                #expect(kernelLinger(fd)?.on == 0)

                // The escape hatch: SO_PRIORITY (0...6 needs no privilege) by number.
                try transport.setOption(.raw(level: SOL_SOCKET, name: SO_PRIORITY), 5)
                #expect(try transport.option(.raw(level: SOL_SOCKET, name: SO_PRIORITY)) == 5)
                #expect(kernelInt(fd, SOL_SOCKET, SO_PRIORITY) == 5)
                var four: Int32 = 4
                try transport.setOption(.rawBytes(level: SOL_SOCKET, name: SO_PRIORITY), withUnsafeBytes(of: &four) { Array($0) })
                #expect(try transport.option(.rawBytes(level: SOL_SOCKET, name: SO_PRIORITY)) == [4, 0, 0, 0])
                #expect(kernelInt(fd, SOL_SOCKET, SO_PRIORITY) == 4)
            }
        }
    }

    // IPV6_TCLASS on an IPv6 connection over ::1 reads back as set, in the kernel too.
    @Test func ipv6TrafficClassReadsBack() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                let server: Server
                do {
                    server = try await loop.createServer(host: "::1", port: 0) { EchoUntilEOF() }
                } catch let error as TransportError where error.code == .addressNotAvailable {
                    return   // no IPv6 loopback here
                }
                defer { server.close() }
                let (transport, _) = try await loop.createConnection(host: "::1", port: server.addresses[0].port ?? 0) {
                    RecordingProtocol(loop: loop)
                }
                defer { transport.abort() }
                try transport.setOption(.trafficClass, 0x28)
                #expect(try transport.option(.trafficClass) == 0x28)
                #expect(kernelInt(transport.fileDescriptor, Int32(IPPROTO_IPV6), IPV6_TCLASS) == 0x28)
            }
        }
    }

    // A value out of range, one the option's type cannot carry, an option this socket does
    // not have and a closed transport each throw a TransportError naming the option and the
    // reason (the kernel's errno text where the kernel refused).
    @Test func badValuesAndWrongOptionsNameTheOption() throws {
        let directory = "/tmp/aio-opt-\(getpid())"
        mkdir(directory, 0o700)
        defer { rmdir(directory) }
        try withLoop { loop in
            try loop.runUntilComplete {
                let (server, _) = try await recordingServer(loop)
                defer { server.close() }
                let (transport, client) = try await loop.createConnection(host: "127.0.0.1", port: server.addresses[0].port ?? 0) {
                    RecordingProtocol(loop: loop)
                }
                #expect(throws: TransportError(.invalidArgument, "cannot set TCP_KEEPIDLE to 0.0 seconds: invalid argument (setsockopt, errno 22)", errno: EINVAL)) {
                    try transport.setOption(.keepAliveIdle, .zero)
                }
                #expect(throws: TransportError(.invalidArgument, "cannot set TCP_KEEPIDLE to 1.5 seconds: the value must be whole seconds in 0...2147483647", errno: EINVAL)) {
                    try transport.setOption(.keepAliveIdle, .milliseconds(1500))
                }
                #expect(throws: TransportError(.invalidArgument, "cannot set SO_RCVBUF to 4294967296: the value must fit in 32 bits", errno: EINVAL)) {
                    try transport.setOption(.receiveBufferSize, 1 << 32)
                }
                #expect(throws: TransportError(.invalidArgument, "cannot set TCP_KEEPCNT to 1000: invalid argument (setsockopt, errno 22)", errno: EINVAL)) {
                    try transport.setOption(.keepAliveCount, 1000)
                }
                #expect(throws: TransportError(.invalidArgument, "cannot set SO_LINGER to on, -1.0 seconds: the value must be nil or whole seconds in 0...2147483647", errno: EINVAL)) {
                    try transport.setOption(.linger, .seconds(-1))
                }
                transport.abort()
                try await waitForEvent(client.lost, "connectionLost after abort")   // the fd is released
                #expect(throws: TransportError(.closed, "cannot set TCP_NODELAY: the socket is closed", errno: EBADF)) {
                    try transport.setOption(.tcpNoDelay, true)
                }
                #expect(throws: TransportError(.closed, "cannot read SO_RCVBUF: the socket is closed", errno: EBADF)) {
                    _ = try transport.option(.receiveBufferSize)
                }

                // TCP options on a Unix socket: not supported, said so with the kernel's words.
                let path = "\(directory)/s"
                let unix = try await loop.createUnixServer(path: path) { RecordingProtocol(loop: loop) }
                defer { unix.close() }
                let (unixTransport, _) = try await loop.createUnixConnection(path: path) { RecordingProtocol(loop: loop) }
                defer { unixTransport.abort() }
                #expect(throws: TransportError(.optionNotSupported, "cannot set TCP_NODELAY to true: operation not supported (setsockopt, errno 95)", errno: EOPNOTSUPP)) {
                    try unixTransport.setOption(.tcpNoDelay, true)
                }
                // Options a Unix socket has work on it.
                try unixTransport.setOption(.sendBufferSize, 16384)
                #expect(try unixTransport.option(.sendBufferSize) == 32768)

                // A pipe is not a socket.
                var fds: [Int32] = [0, 0]
                #expect(pipe(&fds) == 0)
                defer { close(fds[1]) }
                let (pipeTransport, _) = try await loop.connectReadPipe(fds[0]) { RecordingProtocol(loop: loop) }
                defer { pipeTransport.abort() }
                #expect(throws: TransportError(.invalidSocket, "cannot read SO_RCVBUF: socket operation on non-socket (getsockopt, errno 88)", errno: ENOTSOCK)) {
                    _ = try pipeTransport.option(.receiveBufferSize)
                }
            }
        }
    }

    // SO_LINGER with a zero timeout makes close send RST: a Python peer's recv raises
    // ConnectionResetError; the same close without it is a clean EOF (b"").
    @Test func lingerZeroResetsThePythonPeer() throws {
        try withLoop { loop in
            let (result, protos) = try loop.runUntilComplete { () async throws -> (ProcessResult, [CloseOnData]) in
                let made = Box<[CloseOnData]>([])
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let proto = CloseOnData(reset: made.value.isEmpty)   // the first connection resets
                    made.value.append(proto)
                    return proto
                }
                defer { server.close() }
                let result = try await loop.runProcess("python3", ["-c", """
                    import socket, sys
                    seen = []
                    for _ in range(2):
                        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                        s.sendall(b"x")
                        try:
                            data = s.recv(10)
                            seen.append("eof" if data == b"" else repr(data))
                        except ConnectionResetError:
                            seen.append("reset")
                        s.close()
                    print(" ".join(seen))
                    """, "\(server.addresses[0].port ?? 0)"])
                return (result, made.value)
            }
            #expect(String(decoding: result.stdout, as: UTF8.self) == "reset eof\n", "\(String(decoding: result.stderr, as: UTF8.self))")
            #expect(protos.count == 2)
            #expect(protos.allSatisfy { $0.setError == nil })
        }
    }

    // A server's options go on every listening socket, read back from the first; accepted
    // connections inherit SO_KEEPALIVE (the kernel copies it at accept).
    @Test func serverOptionsApplyToListeningSockets() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                let (server, accepted) = try await recordingServer(loop)
                defer { server.close() }
                #expect(try server.option(.reuseAddress) == true)   // createServer's default
                #expect(try server.option(.keepAlive) == false)
                try server.setOption(.keepAlive, true)
                try server.setOption(.receiveBufferSize, 100_000)
                #expect(try server.option(.keepAlive) == true)
                let listener = server.socketDescriptors[0]
                #expect(kernelInt(listener, SOL_SOCKET, SO_KEEPALIVE) == 1)
                #expect(kernelInt(listener, SOL_SOCKET, SO_RCVBUF) == 200_000)
                #expect(try server.option(.receiveBufferSize) == 200_000)

                let (transport, _) = try await loop.createConnection(host: "127.0.0.1", port: server.addresses[0].port ?? 0) {
                    RecordingProtocol(loop: loop)
                }
                defer { transport.abort() }
                let serverSide = try await accepted.connection(0)
                let fd = try #require(serverSide.transport?.fileDescriptor)
                #expect(kernelInt(fd, SOL_SOCKET, SO_KEEPALIVE) == 1)
                #expect(try serverSide.transport?.option(.keepAlive) == true)
                #expect(try transport.option(.keepAlive) == false)   // the client's own socket

                server.close()
                #expect(server.socketDescriptors.isEmpty)
                #expect(throws: TransportError(.closed, "cannot set SO_KEEPALIVE: the socket is closed", errno: EBADF)) {
                    try server.setOption(.keepAlive, true)
                }
            }
        }
    }

    // A datagram endpoint's IP_TOS reaches the wire: a Python receiver with IP_RECVTOS reads
    // the TOS byte of the datagram it got. SO_BROADCAST and buffer sizes read back; a TCP
    // option on a UDP socket is refused by name.
    @Test func datagramTypeOfServiceReachesAPythonReceiver() throws {
        try withLoop { loop in
            let result = try loop.runUntilComplete { () async throws -> ProcessResult in
                let python = try await loop.createSubprocessExec("python3", ["-c", """
                    import socket, sys
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.bind(("127.0.0.1", 0))
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
                    print(s.getsockname()[1], flush=True)
                    data, ancillary, flags, address = s.recvmsg(100, 64)
                    tos = [c[2][0] for c in ancillary if c[0] == socket.IPPROTO_IP and c[1] == socket.IP_TOS]
                    print(data.decode(), tos)
                    """], stdout: .pipe)
                let reader = try #require(python.stdout)
                let portLine = try await reader.readLine()
                let port = try #require(Int(String(decoding: portLine.dropLast(), as: UTF8.self)))
                let (endpoint, _) = try await loop.createDatagramEndpoint(remoteHost: "127.0.0.1", remotePort: port) {
                    DatagramRecorder(loop: loop)
                }
                defer { endpoint.close() }
                try endpoint.setOption(.typeOfService, 0xb8)   // DSCP EF
                #expect(try endpoint.option(.typeOfService) == 0xb8)
                try endpoint.setOption(.broadcast, true)
                #expect(try endpoint.option(.broadcast) == true)
                #expect(kernelInt(endpoint.fileDescriptor, SOL_SOCKET, SO_BROADCAST) == 1)
                try endpoint.setOption(.receiveBufferSize, 50_000)
                #expect(try endpoint.option(.receiveBufferSize) == 100_000)
                let refused = #expect(throws: TransportError.self) { try endpoint.setOption(.tcpNoDelay, true) }
                #expect(refused?.code == .optionNotSupported)
                #expect(refused?.message.hasPrefix("cannot set TCP_NODELAY to true: ") == true, "\(String(describing: refused))")
                endpoint.send(Array("tos".utf8))
                let output = try await python.communicate()
                return ProcessResult(returnCode: try await python.wait(), stdout: output.stdout, stderr: output.stderr)
            }
            #expect(result.returnCode == 0)
            #expect(String(decoding: result.stdout, as: UTF8.self) == "tos [184]\n")
        }
    }

    // A ServerGroup sets an option on every loop's own listening socket (SO_REUSEPORT: one
    // socket per loop), each on its loop; the kernel sees it on all of them.
    @Test func serverGroupSetsOptionsOnEveryLoop() async throws {
        let group = try EventLoopGroup(loops: 2, name: "options")
        defer { group.shutdown() }
        let servers = try await group.createServer(host: "127.0.0.1", port: 0) { EchoUntilEOF() }
        #expect(try await servers.option(.keepAlive) == false)
        try await servers.setOption(.keepAlive, true)
        try await servers.setOption(.receiveBufferSize, 70_000)
        #expect(try await servers.option(.keepAlive) == true)
        var descriptors: [Int32] = []
        for server in servers.servers {
            descriptors += try await server.loop.submit { server.socketDescriptors }
        }
        #expect(descriptors.count == 2 && Set(descriptors).count == 2)
        for fd in descriptors {
            #expect(kernelInt(fd, SOL_SOCKET, SO_KEEPALIVE) == 1)
            #expect(kernelInt(fd, SOL_SOCKET, SO_RCVBUF) == 140_000)
        }
        await servers.close()
        await #expect(throws: TransportError.self) { try await servers.setOption(.keepAlive, false) }
    }
}
