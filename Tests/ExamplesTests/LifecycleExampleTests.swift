//===----------------------------------------------------------------------===//
// swift-asyncio — tcp-echo-server --lifecycle: SIGTERM mid-transfer under swift-service-lifecycle.
//===----------------------------------------------------------------------===//

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

#if ServiceLifecycle

/// Sends the first half of 2 MiB and reads its echo, says "half", then waits until a new
/// connection is refused (the test sent SIGTERM: the server stopped listening), says
/// "refused", sends the second half on the first connection, half-closes it and reads the
/// echo to EOF: "same N" if every byte came back.
private let pythonMidTransferClient = #"""
port = int(sys.argv[1])
data = random.Random(11).randbytes(2 * 1024 * 1024)
half = len(data) // 2
s = connect(port)
first = stream_echo(s, data[:half])
print("half", len(first) if first == data[:half] else "different", flush=True)
deadline = time.monotonic() + 60
while True:
    try:
        connect(port, timeout=5).close()
    except ConnectionRefusedError:
        break
    if time.monotonic() > deadline:
        print("still accepting", flush=True)
        sys.exit(1)
    time.sleep(0.01)
print("refused", flush=True)
received = bytearray()
def read():
    while chunk := s.recv(1 << 16):
        received.extend(chunk)
reader = threading.Thread(target=read)
reader.start()
s.sendall(data[half:])
s.shutdown(socket.SHUT_WR)
reader.join(60)
print("same" if bytes(received) == data[half:] else "different", len(received), flush=True)
"""#

@Suite(.timeLimit(.minutes(10)))
struct LifecycleExampleTests {
    // SIGTERM while a Python client is halfway through a 2 MiB echo: the server stops
    // listening (a new connection is refused) but the open connection finishes within the
    // grace period, every byte echoed exactly; then the server exits 0 on its own.
    @Test func sigtermMidTransferLetsTheTransferFinish() throws {
        let server = try startServer("tcp-echo-server", ["--port", "0", "--lifecycle", "--grace-period", "60"])
        defer { server.stop() }
        let port = try #require(Int(server.listeningOn.dropFirst("127.0.0.1:".count)), "\(server.listeningOn)")
        let client = try startPython(pythonMidTransferClient, ["\(port)"], label: "mid-transfer client")
        defer { client.stop() }

        let half = client.readLine(timeout: 60)
        try #require(half == "half 1048576", "client: \(half ?? "nothing"); \(client.stderrText)")
        server.signal(SIGTERM)
        #expect(client.readLine(timeout: 60) == "refused", "\(client.stderrText)")
        #expect(client.readLine(timeout: 60) == "same 1048576", "\(client.stderrText)")
        #expect(client.waitExit(timeout: 30)?.isSuccess == true, "\(client.stderrText)")

        // The grace period is 60 s: the server ends now because its last connection did.
        let exit = server.waitExit(timeout: 30)
        #expect(exit?.isSuccess == true, "\(exit.map { "\($0)" } ?? "still running"); \(server.stderrText)")
        #expect(server.stdoutText == "listening on 127.0.0.1:\(port)\n")
    }

    // --lifecycle keeps the examples contract with an idle client: SIGTERM, the grace period
    // (1 s by default) passes, the client sees a clean EOF and the server exits 0.
    @Test func sigtermWithAnIdleClientClosesAfterTheGracePeriod() throws {
        let server = try startServer("tcp-echo-server", ["--port", "0", "--lifecycle"])
        defer { server.stop() }
        let port = try #require(Int(server.listeningOn.dropFirst("127.0.0.1:".count)), "\(server.listeningOn)")
        let client = try startPython(#"""
            s = connect(sys.argv[1])
            s.sendall(b"x")
            print("echo", recv_exact(s, 1).decode(), flush=True)
            print("eof" if s.recv(1) == b"" else "data", flush=True)
            """#, ["\(port)"], label: "idle client")
        defer { client.stop() }
        let echoed = client.readLine(timeout: 60)
        try #require(echoed == "echo x", "client: \(echoed ?? "nothing"); \(client.stderrText)")
        guard server.expectGracefulExit(after: SIGTERM) != nil else { return }
        #expect(client.readLine(timeout: 10) == "eof", "\(client.stdoutText) \(client.stderrText)")
        #expect(client.waitExit(timeout: 10)?.isSuccess == true, "\(client.stderrText)")
    }
}
#else
@Suite struct LifecycleExampleWithoutTraitTests {
    // Built without the ServiceLifecycle trait (the package's default), --lifecycle is an
    // error that says how to get it, before anything listens.
    @Test func lifecycleWithoutTheTraitExitsOneAndSaysHow() throws {
        let result = try runExample("tcp-echo-server", ["--port", "0", "--lifecycle"])
        #expect(result.status == 1)
        #expect(result.stdout == "")
        #expect(result.stderr == "tcp-echo-server: error: --lifecycle needs the package built with its ServiceLifecycle trait (swift run --traits ServiceLifecycle tcp-echo-server --lifecycle)\n")
    }
}
#endif
