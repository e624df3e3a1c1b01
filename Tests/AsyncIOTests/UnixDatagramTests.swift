//===----------------------------------------------------------------------===//
// swift-asyncio — Unix datagram endpoints (createUnixDatagramEndpoint) against Python's
// socket module: paths and abstract names, exact bytes and boundaries both ways, the unnamed
// sender, the socket file's life, and the typed errors.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Records every datagram and error, and echoes each datagram to its sender.
private final class EchoingRecorder: DatagramProtocol, @unchecked Sendable {
    let recorder: DatagramRecorder
    var transport: (any DatagramTransport)?
    init(loop: EventLoop) { recorder = DatagramRecorder(loop: loop) }
    func connectionMade(_ transport: any DatagramTransport) { self.transport = transport }
    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) {
        transport?.sendTo(bytes, address)
        recorder.datagramReceived(bytes, from: address)
    }
    func errorReceived(_ error: any Error) { recorder.errorReceived(error) }
    func connectionLost(_ error: (any Error)?) { transport = nil }
}

/// Counts flow-control calls.
private final class FlowRecorder: DatagramProtocol, @unchecked Sendable {
    var pauses = 0
    var resumes = 0
    func connectionMade(_ transport: any DatagramTransport) {}
    func datagramReceived(_ bytes: UnsafeRawBufferPointer, from address: SocketAddress) {}
    func pauseWriting() { pauses += 1 }
    func resumeWriting() { resumes += 1 }
}

/// A fresh directory under /tmp for socket files; removed afterwards with whatever is left
/// in it.
private func withSocketDirectory<T>(_ body: (String) throws -> T) throws -> T {
    var template = Array("/tmp/asyncio-dgram-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw TestError(id: Int(errno)) }
    let directory = String(cString: made)
    defer {
        if let dir = opendir(directory) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { unlink(directory + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(directory)
    }
    return try body(directory)
}

/// Whether anything exists at `path` (lstat).
private func exists(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0
}

/// A name no other test or run uses.
private func uniqueName(_ label: String) -> String {
    "swift-asyncio-dgram-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

@Suite(.timeLimit(.minutes(10)))
struct UnixDatagramTests {
    // Python, bound to a path, sends datagrams of 0, 1, 1,000 and 65,536 bytes and 20 small
    // ones back to back to our endpoint's path; each arrives alone and exact from Python's
    // path, and each echo reaches Python exact (boundaries kept both ways). A 65,537-byte
    // datagram (bigger than a receive slot) is not delivered cut short: errorReceived gets
    // EMSGSIZE naming the sender, and the endpoint goes on. Our file is there while the
    // endpoint is open and gone once it closed.
    @Test func pathsBothWaysWithExactBoundaries() throws {
        try withSocketDirectory { directory in
            let ours = directory + "/ours.sock"
            let theirs = directory + "/py.sock"
            try withLoop { loop in
                try loop.runUntilComplete {
                    let (endpoint, echo) = try await loop.createUnixDatagramEndpoint(localPath: ours) { EchoingRecorder(loop: loop) }
                    #expect(endpoint.localAddress == SocketAddress(unixPath: ours))
                    #expect(endpoint.peerAddress == nil)
                    #expect(exists(ours))
                    let python = try await startPython(loop, """
                        import socket, sys
                        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                        s.settimeout(30)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                        s.bind(sys.argv[1])
                        sizes = [0, 1, 1000, 65536] + [7] * 20
                        payloads = [bytes((i * 13 + n) % 256 for i in range(n)) for n in sizes]
                        for p in payloads:
                            s.sendto(p, sys.argv[2])
                        results = []
                        for p in payloads:
                            data, source = s.recvfrom(1 << 17)
                            results.append(data == p and source == sys.argv[2])
                        s.sendto(bytes(65537), sys.argv[2])
                        s.sendto(b"after", sys.argv[2])
                        data, _ = s.recvfrom(1 << 17)
                        print(all(results), len(results), data.decode(), flush=True)
                        """, [theirs, ours])
                    let result = try await finishPython(python)
                    #expect(result.stdout == "True 24 after\n")
                    let sizes = [0, 1, 1000, 65536] + Array(repeating: 7, count: 20)
                    let expected = sizes.map { n in (0..<n).map { UInt8((($0 * 13) + n) % 256) } } + [Array("after".utf8)]
                    #expect(echo.recorder.datagrams.map(\.0) == expected)
                    #expect(echo.recorder.datagrams.allSatisfy { $0.1 == SocketAddress(unixPath: theirs) })
                    let errors = echo.recorder.errors.compactMap { $0 as? TransportError }
                    #expect(errors.map(\.errno) == [EMSGSIZE])
                    #expect(errors.first?.message == "a datagram from \(theirs) was longer than 65536 bytes and was dropped (recvmmsg)")
                    endpoint.close()
                    try await waitUntil("the endpoint closed") { endpoint.fileDescriptor < 0 }
                    #expect(!exists(ours))
                }
            }
        }
    }

    // Abstract names: our endpoint bound to "\0ours" and connected to Python's "\0py";
    // Python sees the sender as exactly b"\0ours" and answers it; our answer comes from
    // exactly "\0py" (the addresses' lengths count the names only, as Python's do).
    @Test func abstractNamesMatchPython() throws {
        let ours = uniqueName("ours")
        let theirs = uniqueName("py")
        try withLoop { loop in
            try loop.runUntilComplete {
                let (python, reader) = try await startAbstractDatagramAnswerer(loop, at: theirs, expecting: ours)
                let (endpoint, recorder) = try await loop.createUnixDatagramEndpoint(
                    localPath: "\u{0}" + ours, remotePath: "\u{0}" + theirs
                ) { DatagramRecorder(loop: loop) }
                defer { endpoint.close() }
                #expect(endpoint.localAddress == SocketAddress(abstractUnixName: ours))
                #expect(endpoint.peerAddress == SocketAddress(abstractUnixName: theirs))
                endpoint.send(Array("hello".utf8))
                #expect(try await reader.readLine() == Array("hello True\n".utf8))
                try await recorder.waitForCount(1)
                #expect(recorder.errors.isEmpty)
                #expect(recorder.datagrams.map(\.0) == [Array("answer:hello".utf8)])
                #expect(recorder.datagrams.map(\.1) == [SocketAddress(abstractUnixName: theirs)])
                _ = try await finishPython(python)
            }
        }
    }

    // A datagram from an unbound Python socket arrives from the unnamed address (empty host,
    // `isUnnamedUnix`), right after one from a bound socket (whose address must not leak
    // into it); an answer to the unnamed address fails with .invalidAddress through
    // errorReceived. Our own unbound, connected endpoint reaches Python, which sees it as
    // unnamed (Python's '' or None).
    @Test func unboundSendersHaveTheUnnamedAddress() throws {
        try withSocketDirectory { directory in
            let ours = directory + "/ours.sock"
            let theirs = directory + "/py.sock"
            try withLoop { loop in
                try loop.runUntilComplete {
                    let (endpoint, recorder) = try await loop.createUnixDatagramEndpoint(localPath: ours) {
                        DatagramRecorder(loop: loop)
                    }
                    defer { endpoint.close() }
                    let python = try await startPython(loop, """
                        import socket, sys
                        named = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                        named.settimeout(30)
                        named.bind(sys.argv[1])
                        named.sendto(b"named", sys.argv[2])
                        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"unnamed", sys.argv[2])
                        print("sent", flush=True)
                        data, source = named.recvfrom(1024)
                        print(data.decode(), repr(source), flush=True)
                        """, [theirs, ours])
                    let reader = try #require(python.stdout)
                    #expect(try await reader.readLine() == Array("sent\n".utf8))
                    try await recorder.waitForCount(2)
                    #expect(recorder.datagrams.map(\.0) == [Array("named".utf8), Array("unnamed".utf8)])
                    #expect(recorder.datagrams.map(\.1) == [SocketAddress(unixPath: theirs), SocketAddress(unixPath: "")])
                    #expect(recorder.datagrams.map(\.1.isUnnamedUnix) == [false, true])
                    #expect(recorder.datagrams[1].1.host == "")

                    endpoint.sendTo(Array("reply".utf8), recorder.datagrams[1].1)
                    #expect((recorder.errors.first as? TransportError)?.code == .invalidAddress)

                    let (client, _) = try await loop.createUnixDatagramEndpoint(remotePath: theirs) { DatagramRecorder(loop: loop) }
                    defer { client.close() }
                    #expect(client.localAddress?.isUnnamedUnix == true)
                    client.send(Array("from an unbound endpoint".utf8))
                    #expect(try await reader.readLine() == Array("from an unbound endpoint None\n".utf8))
                    _ = try await finishPython(python)
                }
            }
        }
    }

    // The socket file's life: a stale file (no socket bound) is replaced; a live socket or a
    // file that is not a socket in the way is .addressInUse naming the path; on close the
    // endpoint removes its file but not a file someone put at the path since.
    @Test func socketFileIsReplacedWhenStaleAndRemovedWhenOurs() throws {
        try withSocketDirectory { directory in
            let path = directory + "/ep.sock"
            try withLoop { loop in
                try loop.runUntilComplete {
                    // A stale file: bound by a socket that is gone.
                    let fd = try rawSocket(AF_UNIX, Int32(SOCK_DGRAM.rawValue))
                    try bindUnix(fd, Array(path.utf8))
                    close(fd)
                    #expect(exists(path))
                    let (first, _) = try await loop.createUnixDatagramEndpoint(localPath: path) { DatagramRecorder(loop: loop) }
                    #expect(first.localAddress == SocketAddress(unixPath: path))

                    // A live one in the way.
                    do {
                        _ = try await loop.createUnixDatagramEndpoint(localPath: path) { DatagramRecorder(loop: loop) }
                        Issue.record("a second endpoint bound a path in use")
                    } catch let error as TransportError {
                        #expect(error.code == .addressInUse)
                        #expect(error.message == "address already in use: \(path)")
                    }

                    // Someone replaced our file: closing leaves theirs alone.
                    unlink(path)
                    let file = open(path, O_CREAT | O_WRONLY, 0o600)
                    #expect(file >= 0)
                    close(file)
                    first.close()
                    try await waitUntil("the endpoint closed") { first.fileDescriptor < 0 }
                    #expect(exists(path))

                    // A file that is not a socket in the way.
                    do {
                        _ = try await loop.createUnixDatagramEndpoint(localPath: path) { DatagramRecorder(loop: loop) }
                        Issue.record("bound over a regular file")
                    } catch let error as TransportError {
                        #expect(error.code == .addressInUse)
                        #expect(error.message == "a file that is not a socket is in the way: \(path)")
                    }
                    #expect(exists(path))
                }
            }
        }
    }

    // A peer that does not read fills its queue (Linux's max_dgram_qlen) and our sends are
    // queued: pauseWriting once over the high-water mark. Once Python reads, all 2,000
    // datagrams arrive whole and in order, the queue drains and resumeWriting comes once.
    // (The socket stays writable while the peer is full, as an unconnected Unix datagram
    // socket's writability is its own: the endpoint backs off and retries instead of
    // spinning; that is measured by hand, CPU time, not asserted here.)
    @Test func aFullPeerQueuesOurSendsUntilItReads() throws {
        try withSocketDirectory { directory in
            let theirs = directory + "/py.sock"
            try withLoop { loop in
                try loop.runUntilComplete {
                    let python = try await loop.createSubprocessExec("python3", ["-c", """
                        import socket, sys
                        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                        s.settimeout(30)
                        s.bind(sys.argv[1])
                        print("ready", flush=True)
                        sys.stdin.readline()
                        ok = all(s.recv(4096) == bytes([i % 256]) * 1024 for i in range(2000))
                        print("in order" if ok else "differs", flush=True)
                        """, theirs], stdin: .pipe, stdout: .pipe, stderr: .pipe)
                    let reader = try #require(python.stdout)
                    #expect(try await reader.readLine() == Array("ready\n".utf8))
                    let (endpoint, flow) = try await loop.createUnixDatagramEndpoint(localPath: directory + "/ours.sock") {
                        FlowRecorder()
                    }
                    defer { endpoint.close() }
                    for i in 0..<2000 {
                        endpoint.sendTo(Array(repeating: UInt8(i % 256), count: 1024), SocketAddress(unixPath: theirs))
                    }
                    try #require(endpoint.writeBufferSize > 0)
                    #expect(flow.pauses == 1)
                    python.stdin?.write("go\n")
                    #expect(try await reader.readLine() == Array("in order\n".utf8))
                    #expect(endpoint.writeBufferSize == 0)
                    #expect(flow.pauses == 1 && flow.resumes == 1)
                    _ = try await finishPython(python)
                }
            }
        }
    }

    // Typed errors: a path too long, neither path, a missing peer at connect (ENOENT) and a
    // peer file with nothing bound (ECONNREFUSED) are .connectionRefused; a send to a missing
    // peer from an unconnected endpoint arrives in errorReceived as .connectionRefused naming
    // the path, and the endpoint goes on working.
    @Test func typedErrors() throws {
        try withSocketDirectory { directory in
            let missing = directory + "/missing.sock"
            let stale = directory + "/stale.sock"
            try withLoop { loop in
                try loop.runUntilComplete {
                    func failure(_ body: () async throws -> Void) async -> String {
                        do {
                            try await body()
                            return "accepted"
                        } catch let error as TransportError {
                            return "\(error.code) \(error.errno): \(error.message)"
                        } catch {
                            return "\(error)"
                        }
                    }
                    let long = directory + "/" + String(repeating: "x", count: 120)
                    #expect(await failure { _ = try await loop.createUnixDatagramEndpoint(localPath: long) { DatagramRecorder(loop: loop) } }
                        == "invalidAddress 0: Unix socket path is empty or longer than 107 bytes: \(long)")
                    #expect(!exists(long))
                    #expect(await failure { _ = try await loop.createUnixDatagramEndpoint { DatagramRecorder(loop: loop) } }
                        == "invalidArgument 22: createUnixDatagramEndpoint needs a local or a remote path")
                    #expect(await failure { _ = try await loop.createUnixDatagramEndpoint(remotePath: missing) { DatagramRecorder(loop: loop) } }
                        == "connectionRefused 2: no such file or directory: \(missing) (connect, errno 2)")
                    let fd = try rawSocket(AF_UNIX, Int32(SOCK_DGRAM.rawValue))
                    try bindUnix(fd, Array(stale.utf8))
                    close(fd)
                    #expect(await failure { _ = try await loop.createUnixDatagramEndpoint(remotePath: stale) { DatagramRecorder(loop: loop) } }
                        == "connectionRefused 111: connection refused: \(stale) (connect, errno 111)")

                    let (endpoint, recorder) = try await loop.createUnixDatagramEndpoint(localPath: directory + "/ok.sock") {
                        DatagramRecorder(loop: loop)
                    }
                    defer { endpoint.close() }
                    endpoint.sendTo(Array("nobody".utf8), SocketAddress(unixPath: missing))
                    let error = try #require(recorder.errors.first as? TransportError)
                    #expect(error.code == .connectionRefused)
                    #expect(error.message == "no such file or directory: \(missing) (sendto, errno 2)")
                    // Still working: a datagram to itself arrives.
                    endpoint.sendTo(Array("self".utf8), SocketAddress(unixPath: directory + "/ok.sock"))
                    try await recorder.waitForCount(2)
                    #expect(recorder.datagrams.map(\.0) == [Array("self".utf8)])
                    #expect(recorder.datagrams.map(\.1) == [SocketAddress(unixPath: directory + "/ok.sock")])
                }
            }
        }
    }
}
