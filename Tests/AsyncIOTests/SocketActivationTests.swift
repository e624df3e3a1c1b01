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

    // In a process of its own (the environment is process-wide): variables for this pid
    // with no sockets, for another pid, and malformed ones; with unsetEnvironment all three
    // variables are gone afterwards whatever the outcome (as sd_listen_fds(1) does), without
    // it they stay. (A real socket at fd 3 is tested end to end in ExamplesTests: fd 3 of this
    // process may belong to the test runtime.)
    @Test func listenFDsReadsAndUnsetsTheEnvironment() async {
        await #expect(processExitsWith: .success) {
            func set(_ pid: String, _ count: String, _ names: String?) {
                setenv("LISTEN_PID", pid, 1)
                setenv("LISTEN_FDS", count, 1)
                if let names { setenv("LISTEN_FDNAMES", names, 1) } else { unsetenv("LISTEN_FDNAMES") }
            }
            func unset() -> Bool {
                getenv("LISTEN_PID") == nil && getenv("LISTEN_FDS") == nil && getenv("LISTEN_FDNAMES") == nil
            }
            let me = "\(getpid())"
            set(me, "0", "")
            guard (try? SocketActivation.listenFDs()) == [], !unset() else { exit(10) }
            guard (try? SocketActivation.listenFDs(unsetEnvironment: true)) == [], unset() else { exit(11) }
            set("1", "2", "a:b")
            guard (try? SocketActivation.listenFDs(unsetEnvironment: true)) == [], unset() else { exit(12) }
            set(me, "two", nil)
            do {
                _ = try SocketActivation.listenFDs(unsetEnvironment: true)
                exit(13)
            } catch {
                guard error as? TransportError == TransportError(.invalidArgument, "LISTEN_FDS is not a count of fds: two", errno: EINVAL), unset() else {
                    exit(14)
                }
            }
            exit(0)
        }
    }
}
