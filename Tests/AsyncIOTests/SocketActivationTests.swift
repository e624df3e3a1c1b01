//===----------------------------------------------------------------------===//
// swift-asyncio — systemd socket activation: LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES read
// as sd_listen_fds_with_names(3) reads them. (tcp-echo-server started with a socket at fd 3,
// Python playing systemd, is in ExamplesTests.)
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(10)))
struct SocketActivationTests {
    // The variables as sd_listen_fds reads them: fds from 3 with their names, "unknown" when
    // no names are given, nothing when they are missing or meant for another pid.
    @Test func variablesAreReadAsSystemdWritesThem() throws {
        let parse = SocketActivation.parse
        #expect(try parse("42", "2", "http:admin", 42) == [
            ActivatedSocket(fileDescriptor: 3, name: "http"), ActivatedSocket(fileDescriptor: 4, name: "admin"),
        ])
        #expect(try parse("42", "3", nil, 42) == [
            ActivatedSocket(fileDescriptor: 3, name: "unknown"), ActivatedSocket(fileDescriptor: 4, name: "unknown"),
            ActivatedSocket(fileDescriptor: 5, name: "unknown"),
        ])
        #expect(try parse("42", "1", "", 42) == [ActivatedSocket(fileDescriptor: 3, name: "")])
        #expect(try parse("41", "2", "a:b", 42) == [])   // our parent's
        #expect(try parse(nil, "2", nil, 42) == [])
        #expect(try parse("42", nil, nil, 42) == [])
        #expect(try parse("42", "0", "", 42) == [])
    }

    // Malformed variables throw .invalidArgument naming the variable and its value.
    @Test func malformedVariablesAreRefusedByName() throws {
        let parse = SocketActivation.parse
        #expect(throws: TransportError(.invalidArgument, "LISTEN_PID is not a pid: 4x2", errno: EINVAL)) {
            _ = try parse("4x2", "1", nil, 42)
        }
        #expect(throws: TransportError(.invalidArgument, "LISTEN_FDS is not a count of fds: -1", errno: EINVAL)) {
            _ = try parse("42", "-1", nil, 42)
        }
        #expect(throws: TransportError(.invalidArgument, "LISTEN_FDNAMES names 1 sockets, LISTEN_FDS says 2: web", errno: EINVAL)) {
            _ = try parse("42", "2", "web", 42)
        }
    }

    // In a process of its own (the environment is process-wide): a listening socket put at
    // fd 3 with this pid's variables is found with its name, made close-on-exec, the variables
    // are gone afterwards with unsetEnvironment, and the server made from it accepts a
    // connection. A second look finds nothing (the variables were unset).
    @Test func listenFDsFindsTheSocketAndUnsetsTheVariables() async {
        await #expect(processExitsWith: .success) {
            // Whatever the test runner keeps at fd 3 moves out of the way first.
            let saved = fcntl(3, F_DUPFD_CLOEXEC, 10)
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard listener >= 0, (try? bindLoopback(listener)) != nil, listen(listener, 4) == 0,
                  dup2(listener, 3) == 3 else { exit(10) }
            close(listener)
            setenv("LISTEN_PID", "\(getpid())", 1)
            setenv("LISTEN_FDS", "1", 1)
            setenv("LISTEN_FDNAMES", "echo", 1)
            guard let sockets = try? SocketActivation.listenFDs(unsetEnvironment: true),
                  sockets == [ActivatedSocket(fileDescriptor: 3, name: "echo")] else { exit(11) }
            guard getenv("LISTEN_PID") == nil, getenv("LISTEN_FDS") == nil, getenv("LISTEN_FDNAMES") == nil else { exit(12) }
            guard fcntl(3, F_GETFD) & FD_CLOEXEC != 0 else { exit(13) }
            guard (try? SocketActivation.listenFDs()) == [] else { exit(14) }
            do {
                let loop = try EventLoop()
                let echoed = try loop.runUntilComplete { () async throws -> [UInt8] in
                    let server = try await loop.createServer(sockets: sockets.map(\.fileDescriptor)) { EchoUntilEOF() }
                    defer { server.close() }
                    let (transport, client) = try await loop.createConnection(host: "127.0.0.1", port: server.addresses[0].port ?? 0) {
                        RecordingProtocol(loop: loop)
                    }
                    transport.write("activated")
                    transport.writeEOF()
                    try await waitFor(client.lost, timeout: .seconds(30))
                    return client.received
                }
                try loop.close()
                if saved >= 0 { dup2(saved, 3) }
                exit(echoed == Array("activated".utf8) ? 0 : 15)
            } catch {
                exit(16)
            }
        }
    }
}
