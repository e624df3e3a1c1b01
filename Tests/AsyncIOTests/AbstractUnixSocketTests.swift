//===----------------------------------------------------------------------===//
// swift-asyncio — Linux abstract Unix socket names (a leading NUL): the address length counts
// the name's bytes only, so our names are the ones Python's `"\0name"` binds and connects to.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// Starts a Python peer bound to the abstract datagram name `"\0" + name` that takes one
/// datagram, prints `TEXT True` if it came from exactly `"\0" + sender`, and answers the
/// sender with `answer:TEXT`; returns once it is bound, with its stdout.
func startAbstractDatagramAnswerer(
    _ loop: EventLoop, at name: String, expecting sender: String
) async throws -> (AsyncIO.Process, StreamReader) {
    let python = try await startPython(loop, """
        import socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.settimeout(30)
        s.bind(b"\\0" + sys.argv[1].encode())
        print("ready", flush=True)
        data, source = s.recvfrom(1024)
        print(data.decode(), source == b"\\0" + sys.argv[2].encode(), flush=True)
        s.sendto(b"answer:" + data, source)
        """, [name, sender])
    let reader = try #require(python.stdout)
    #expect(try await reader.readLine() == Array("ready\n".utf8))
    return (python, reader)
}

@Suite(.timeLimit(.minutes(10)))
struct AbstractUnixSocketTests {
    /// A name no other test or run uses.
    private func uniqueName(_ label: String) -> String {
        "swift-asyncio-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    // The sockaddr is the family, the NUL and the name — no trailing NUL — and reads back as
    // the same address; the description is `@name`; an abstract name may hold a NUL of its own
    // and up to 108 bytes, one more is refused.
    @Test func abstractSockaddrCountsOnlyTheName() throws {
        let address = SocketAddress(abstractUnixName: "demo")
        #expect(address == SocketAddress(unixPath: "\u{0}demo"))
        #expect(address.isAbstractUnix)
        #expect(!SocketAddress(unixPath: "/tmp/demo").isAbstractUnix)
        #expect(address.description == "@demo")
        #expect(address.host == "\u{0}demo")
        let bytes = try address.withSockAddr { pointer, length in Array(UnsafeRawBufferPointer(start: pointer, count: Int(length))) }
        #expect(bytes == [UInt8(AF_UNIX), 0, 0] + Array("demo".utf8))
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: bytes) }
        #expect(SocketAddress(storage: storage, length: socklen_t(bytes.count)) == address)

        let inner = SocketAddress(unixPath: "\u{0}a\u{0}b")
        #expect(try inner.withSockAddr { _, length in length } == 2 + 4)
        #expect(try SocketAddress(unixPath: "\u{0}" + String(repeating: "x", count: 107)).withSockAddr { _, length in length } == 110)
        #expect(throws: TransportError.self) {
            _ = try SocketAddress(unixPath: "\u{0}" + String(repeating: "x", count: 108)).withSockAddr { _, length in length }
        }
    }

    // Our server on an abstract name: a Python client connects to b"\0name" and gets its
    // bytes back exactly; Python's getpeername on that connection is exactly b"\0name" (the
    // kernel's view of the name we bound); no file was made.
    @Test func pythonClientReachesOurAbstractServer() throws {
        let name = uniqueName("server")
        try withLoop { loop in
            try loop.runUntilComplete {
                let server = try await loop.createUnixServer(path: "\u{0}" + name) { EchoUntilEOF() }
                defer { server.close() }
                #expect(server.addresses == [SocketAddress(abstractUnixName: name)])
                #expect(server.addresses[0].description == "@" + name)
                let python = try await startPython(loop, """
                    import socket, sys
                    name = b"\\0" + sys.argv[1].encode()
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(30)
                    s.connect(name)
                    payload = bytes(range(256)) * 100
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    got = bytearray()
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                    print("exact" if bytes(got) == payload else "differs", s.getpeername() == name)
                    """, [name])
                let result = try await finishPython(python)
                #expect(result.stdout == "exact True\n")
            }
        }
    }

    // A Python server on an abstract name: createUnixConnection(path: "\0name") reaches it,
    // the echo is exact, and the peer address reads back as the same abstract name.
    @Test func ourClientReachesAPythonAbstractServer() throws {
        let name = uniqueName("client")
        try withLoop { loop in
            try loop.runUntilComplete {
                let python = try await startPython(loop, """
                    import socket, sys
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.bind(b"\\0" + sys.argv[1].encode())
                    s.listen(1)
                    print("ready", flush=True)
                    c, _ = s.accept()
                    while True:
                        chunk = c.recv(65536)
                        if not chunk:
                            break
                        c.sendall(chunk)
                    c.close()
                    """, [name])
                let ready = try await #require(python.stdout).readLine()
                #expect(ready == Array("ready\n".utf8))
                let (transport, client) = try await loop.createUnixConnection(path: "\u{0}" + name) {
                    RecordingProtocol(loop: loop)
                }
                #expect(transport.peerAddress == SocketAddress(abstractUnixName: name))
                let message = Array("through the abstract namespace".utf8)
                try await sendAndAwaitEcho(message, over: transport, client)
                #expect(client.received == message)
                _ = try await finishPython(python)
            }
        }
    }

    // Unix datagrams between abstract names, both ways: our endpoint (a socket bound to
    // "\0ours" by hand, adopted with createDatagramEndpoint(sock:)) sends to Python's
    // "\0py"; Python sees the sender as exactly b"\0ours" and answers it; we see the answer
    // come from exactly "\0py".
    @Test func datagramsCrossBetweenAbstractNames() throws {
        let ours = uniqueName("dgram-ours")
        let theirs = uniqueName("dgram-py")
        try withLoop { loop in
            try loop.runUntilComplete {
                let (python, reader) = try await startAbstractDatagramAnswerer(loop, at: theirs, expecting: ours)
                let fd = try rawSocket(AF_UNIX, Int32(SOCK_DGRAM.rawValue))
                try bindUnix(fd, [0] + Array(ours.utf8))
                let (endpoint, recorder) = try await loop.createDatagramEndpoint(sock: fd) { DatagramRecorder(loop: loop) }
                defer { endpoint.close() }
                #expect(endpoint.localAddress == SocketAddress(abstractUnixName: ours))
                let next = Future<Void>(loop: loop)
                recorder.next = next
                endpoint.sendTo(Array("hello".utf8), SocketAddress(abstractUnixName: theirs))
                #expect(try await reader.readLine() == Array("hello True\n".utf8))
                try await waitForEvent(next, "Python's answer")
                #expect(recorder.errors.isEmpty)
                #expect(recorder.datagrams.map(\.0) == [Array("answer:hello".utf8)])
                #expect(recorder.datagrams.map(\.1) == [SocketAddress(abstractUnixName: theirs)])
                _ = try await finishPython(python)
            }
        }
    }
}
