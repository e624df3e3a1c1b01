//===----------------------------------------------------------------------===//
// swift-asyncio — tcp-echo-server started the way systemd starts a socket-activated service:
// Python plays systemd (binds and listens, puts the socket at fd 3, sets LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES, and execs the server in the same process).
//===----------------------------------------------------------------------===//

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Binds 127.0.0.1:0, listens, moves the socket to fd 3 (inheritable), prints the port, then
/// execs `argv[1]` with the variables for pid `argv[2]` ("self": its own, which exec keeps).
private let pythonSystemd = #"""
import os, socket, sys
binary, owner = sys.argv[1], sys.argv[2]
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
fd = listener.detach()
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
print(f"systemd: {port}", flush=True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="echo")
env["LISTEN_PID"] = str(os.getpid()) if owner == "self" else owner
os.execve(binary, [binary, "--port", "0", "--loops", "2"], env)
"""#

/// Sends a distinct message on each of 8 connections and prints how many came back exact.
private let pythonEchoes = #"""
port = int(sys.argv[1])
socks = [connect(port) for _ in range(8)]
messages = [f"activated {i} {'x' * (i * 1000)}\n".encode() for i in range(8)]
for s, m in zip(socks, messages):
    s.sendall(m)
print(f"exact {sum(recv_exact(s, len(m)) == m for s, m in zip(socks, messages))}")
"""#

/// systemd's own tool plays systemd: systemd-socket-activate listens on a free port, execs
/// tcp-echo-server at the first connection with the socket at fd 3; the client's bytes come
/// back exactly, the server's line names that port, and SIGTERM ends it with status 0.
private let pythonSystemdSocketActivate = #"""
import signal, subprocess
tool, binary = sys.argv[1], sys.argv[2]
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
p = subprocess.Popen([tool, "-l", f"127.0.0.1:{port}", "--fdname=echo", binary, "--port", "0"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
try:
    print("tool:", p.stderr.readline().decode().strip(), flush=True)
    c = connect(port)
    message = b"via systemd-socket-activate\n" * 1000
    c.sendall(message)
    print("echo exact" if recv_exact(c, len(message)) == message else "echo differs", flush=True)
    print("server:", p.stdout.readline().decode().strip() == f"listening on 127.0.0.1:{port}", flush=True)
    c.close()
    p.send_signal(signal.SIGTERM)
    print("exit", p.wait(30), flush=True)
finally:
    if p.poll() is None:
        p.kill()
        p.wait()
"""#

@Suite(.serialized, .timeLimit(.minutes(10)))
struct SocketActivationEndToEndTests {
    /// Starts tcp-echo-server under the Python "systemd"; returns it, the port Python bound
    /// and the address the server says it listens on.
    private func startActivated(owner: String) throws -> (server: Child, boundPort: Int, listeningOn: String) {
        let server = try Child(python3, ["-c", pythonSystemd, examplePath("tcp-echo-server"), owner], label: "tcp-echo-server")
        guard let first = server.readLine(timeout: 60), first.hasPrefix("systemd: "), let port = Int(first.dropFirst(9)) else {
            server.stop()
            throw E2EError("the Python systemd printed no port; stderr: \(server.stderrText)")
        }
        guard let line = server.readLine(timeout: 20), line.hasPrefix("listening on ") else {
            server.stop()
            throw E2EError("tcp-echo-server printed no 'listening on' line; stderr: \(server.stderrText)")
        }
        return (server, port, String(line.dropFirst("listening on ".count)))
    }

    // With LISTEN_PID its own pid, the server serves the socket at fd 3 (it binds nothing):
    // it says it listens on the port Python bound, and echoes there on both of its loops.
    @Test func tcpEchoServerServesTheSocketSystemdPassed() throws {
        let (server, port, listeningOn) = try startActivated(owner: "self")
        defer { server.stop() }
        #expect(listeningOn == "127.0.0.1:\(port)")
        let result = try runPython(pythonEchoes, ["\(port)"])
        #expect(result.succeeded, "\(result.summary)")
        #expect(result.text == "exact 8\n")
        server.expectGracefulExit(after: SIGTERM)
    }

    // With LISTEN_PID another process's pid (the variables were meant for a parent), the
    // server ignores fd 3 and binds --port 0 itself, as sd_listen_fds does.
    @Test func variablesForAnotherPIDAreIgnored() throws {
        let (server, port, listeningOn) = try startActivated(owner: "1")
        defer { server.stop() }
        #expect(listeningOn.hasPrefix("127.0.0.1:"))
        #expect(listeningOn != "127.0.0.1:\(port)")
        let ownPort = try #require(Int(listeningOn.dropFirst("127.0.0.1:".count)))
        let result = try runPython(pythonEchoes, ["\(ownPort)"])
        #expect(result.text == "exact 8\n", "\(result.summary)")
        server.expectGracefulExit(after: SIGTERM)
    }

    // systemd's own systemd-socket-activate starts tcp-echo-server (skipped without it).
    @Test(.enabled(if: commandPath("systemd-socket-activate") != nil, "systemd-socket-activate is not installed"))
    func systemdSocketActivateStartsTheServer() throws {
        let tool = try #require(commandPath("systemd-socket-activate"))
        let result = try runPython(pythonSystemdSocketActivate, [tool, examplePath("tcp-echo-server")], timeout: 120)
        #expect(result.succeeded, "\(result.summary)")
        #expect(result.lines.count == 4, "\(result.summary)")
        #expect(result.lines.first?.hasPrefix("tool: Listening on 127.0.0.1:") == true, "\(result.summary)")
        #expect(Array(result.lines.dropFirst()) == ["echo exact", "server: True", "exit 0"], "\(result.summary)")
    }
}
