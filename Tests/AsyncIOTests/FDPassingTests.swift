//===----------------------------------------------------------------------===//
// swift-asyncio — Passing descriptors (SCM_RIGHTS) and peer credentials, with Python.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// The second process of a hand-over: it connects to the control socket, receives the
/// listening socket, serves two connections on it, then sends back the write end of a pipe
/// and prints what arrives through it.
private let pythonTakesOver = """
import os, socket, sys
control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
control.connect(sys.argv[1])
message, fds, flags, _ = socket.recv_fds(control, 100, 4)
listener = socket.socket(fileno=fds[0])
listener.setblocking(True)
print("took", message.decode(), len(fds), flush=True)
for _ in range(2):
    connection, _ = listener.accept()
    connection.sendall(b"served by the new process\\n")
    connection.close()
read_end, write_end = os.pipe()
socket.send_fds(control, [b"p"], [write_end])
os.close(write_end)
data = b""
while True:
    chunk = os.read(read_end, 100)
    if not chunk:
        break
    data += chunk
print(data.decode(), flush=True)
"""

/// Connects to 127.0.0.1:`port` and returns everything the server sends until it closes.
private func fetch(_ loop: EventLoop, port: Int) async throws -> String {
    let fd = try nonBlockingSocket()
    defer { close(fd) }
    try await loop.sockConnect(fd, to: SocketAddress(ipAddress: "127.0.0.1", port: port))
    var all: [UInt8] = []
    while true {
        let chunk = try await loop.sockRecv(fd, max: 1000)
        if chunk.isEmpty { return String(decoding: all, as: UTF8.self) }
        all += chunk
    }
}

@Suite(.timeLimit(.minutes(10)))
struct FDPassingTests {
    // Zero-downtime hand-over: this process serves a connection, hands its listening socket
    // to a second process over a Unix socket and closes its own copy; the second process
    // serves the next connections on the same port (none is refused: the socket never
    // closed). The control connection's SO_PEERCRED names the second process; a pipe's
    // write end passed back the other way works here.
    @Test func aListeningSocketHandedToASecondProcessKeepsServing() throws {
        try withLoop { loop in
            let path = "/tmp/asyncio-fdpass-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            defer { unlink(path) }
            let listener = try nonBlockingSocket()
            try Socket.bind(listener, try SocketAddress(ipAddress: "127.0.0.1", port: 0))
            #expect(listen(listener, 16) == 0)
            let port = try #require(Socket.localAddress(listener)?.port)
            let control = try nonBlockingSocket(AF_UNIX)
            defer { close(control) }
            try Socket.bind(control, SocketAddress(unixPath: path))
            #expect(listen(control, 1) == 0)

            let (first, later, credentials, childPID, output) = try loop.runUntilComplete {
                () async throws -> (String, [String], PeerCredentials, Int32, String) in
                // Served here first.
                let client = loop.createTask { try await fetch(loop, port: port) }
                let (served, _) = try await loop.sockAccept(listener)
                try await loop.sockSendAll(served, Array("served by the first process\n".utf8))
                close(served)
                let first = try await client.value

                let python = try await loop.createSubprocessExec(
                    "python3", ["-c", pythonTakesOver, path], stdin: .devNull, stdout: .pipe, stderr: .pipe)
                let (connection, _) = try await loop.sockAccept(control)
                defer { close(connection) }
                let credentials = try PeerCredentials(socket: connection)
                try await loop.sockSendFDs(connection, bytes: Array("listener".utf8), fds: [listener])
                close(listener)   // the first process stops listening
                let took = try await python.stdout?.readLine() ?? []
                #expect(String(decoding: took, as: UTF8.self) == "took listener 1\n")
                let later = [try await fetch(loop, port: port), try await fetch(loop, port: port)]

                let received = try await loop.sockRecvFDs(connection, max: 10, maxFDs: 4)
                #expect(received.bytes == Array("p".utf8))
                #expect(received.fileDescriptors.count == 1 && !received.truncated)
                let pipe = try #require(received.fileDescriptors.first)
                #expect(fcntl(pipe, F_GETFD) & FD_CLOEXEC != 0, "received descriptors are close-on-exec")
                #expect(write(pipe, "through the passed pipe", 23) == 23)
                close(pipe)
                let (stdout, stderr) = try await python.communicate()
                #expect(python.returnCode == 0, "\(String(decoding: stderr, as: UTF8.self))")
                return (first, later, credentials, python.pid, String(decoding: stdout, as: UTF8.self))
            }
            #expect(first == "served by the first process\n")
            #expect(later == ["served by the new process\n", "served by the new process\n"])
            #expect(credentials.pid == childPID)
            #expect(credentials.uid == getuid() && credentials.gid == getgid())
            #expect(output == "through the passed pipe\n")
        }
    }

    // Bad requests are errors, not crashes: no bytes to carry the descriptors, a closed
    // descriptor (EBADF from the kernel), credentials of a socket with no peer.
    @Test func badRequestsAreErrors() throws {
        try withLoop { loop in
            var pair: [Int32] = [-1, -1]
            #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
            let (a, b) = (pair[0], pair[1])
            defer { close(a); close(b) }
            let unconnected = try rawSocket(AF_UNIX, Int32(SOCK_STREAM.rawValue))
            defer { close(unconnected) }
            try loop.runUntilComplete {
                await #expect {
                    try await loop.sockSendFDs(a, bytes: [], fds: [a])
                } throws: { ($0 as? TransportError)?.code == .invalidArgument }
                await #expect {
                    try await loop.sockSendFDs(a, bytes: [1], fds: [9999])
                } throws: { ($0 as? TransportError)?.errno == EBADF }
                #expect(throws: TransportError.self) { _ = try PeerCredentials(socket: unconnected) }
                // Nothing was sent by the failed calls.
                #expect(try await loop.sockSendFDs(a, bytes: [7], fds: []) == ())
                let received = try await loop.sockRecvFDs(b, max: 10, maxFDs: 1)
                #expect(received.bytes == [7] && received.fileDescriptors.isEmpty)
            }
        }
    }
}
