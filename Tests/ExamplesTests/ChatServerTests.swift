//===----------------------------------------------------------------------===//
// swift-asyncio — chat-server end to end: the contract in DESIGN.md, spoken by Python
// socket clients over loopback.
//===----------------------------------------------------------------------===//

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Python helpers for chat clients: `Chat(port)` connects; `line()` reads one line (without
/// "\n") or fails after a timeout; `closed()` is true once the server closed the connection;
/// `quiet(t)` checks that nothing arrives for t seconds.
private let chatPrelude = #"""
class Chat:
    def __init__(self, port, nick=None):
        self.s = connect(port, timeout=20)
        self.buf = b""
        if nick is not None:
            self.send(nick)
    def send(self, text):
        self.s.sendall(text.encode() + b"\n" if isinstance(text, str) else text)
    def line(self, timeout=20):
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("no line within %s s; have %r" % (timeout, self.buf))
            self.s.settimeout(left)
            chunk = self.s.recv(65536)
            if not chunk:
                raise AssertionError("connection closed; have %r" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()
    def expect(self, *lines):
        for want in lines:
            got = self.line()
            assert got == want, "expected %r, got %r" % (want, got)
    def closed(self, timeout=20):
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
    def quiet(self, seconds):
        self.s.settimeout(seconds)
        try:
            chunk = self.s.recv(65536)
            assert not chunk and False, "unexpected %r" % chunk
        except socket.timeout:
            return True

port = sys.argv[1]

"""#

/// Starts chat-server on an ephemeral port with `arguments`; returns it and its port.
private func startChatServer(_ arguments: [String] = []) throws -> (server: Child, port: Int) {
    let server = try startServer("chat-server", ["--port", "0"] + arguments)
    let prefix = "127.0.0.1:"
    guard server.listeningOn.hasPrefix(prefix), let port = Int(server.listeningOn.dropFirst(prefix.count)) else {
        server.stop()
        throw E2EError("chat-server printed 'listening on \(server.listeningOn)', not 127.0.0.1:PORT")
    }
    return (server, port)
}

/// Runs a chat client script against `port`; it prints "ok" at the end when every check held.
private func runChatScript(_ script: String, port: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let result = try runPython(chatPrelude + script + "\nprint('ok')\n", ["\(port)"], timeout: 120, sourceLocation: sourceLocation)
    #expect(result.succeeded && result.text == "ok\n", "\(result.summary)", sourceLocation: sourceLocation)
}

@Suite(.timeLimit(.minutes(10)))
struct ChatServerTests {
    // Rules 1 and 2: welcome with the count, joined/left notices, messages to the others only
    // (the empty line too), /who sorted by bytes, unknown commands, /quit with bye.
    @Test func joinChatWhoQuit() throws {
        let (server, port) = try startChatServer()
        defer { server.stop() }
        try runChatScript(#"""
alice = Chat(port, "alice"); alice.expect("* welcome alice, 1 online")
bob = Chat(port, "bob"); bob.expect("* welcome bob, 2 online"); alice.expect("* bob joined")
Zed = Chat(port, "Zed"); Zed.expect("* welcome Zed, 3 online")
alice.expect("* Zed joined"); bob.expect("* Zed joined")
alice.send("hello there")
bob.expect("alice: hello there"); Zed.expect("alice: hello there")
bob.send(b"with crlf\r\n"); alice.expect("bob: with crlf"); Zed.expect("bob: with crlf")
Zed.send(""); alice.expect("Zed: "); bob.expect("Zed: ")
alice.send("/who"); alice.expect("* online: Zed alice bob")
bob.send("/nope"); bob.expect("* unknown command")
bob.send("/quit"); bob.expect("* bye"); assert bob.closed()
alice.expect("* bob left"); Zed.expect("* bob left")
alice.send("/who"); alice.expect("* online: Zed alice")
assert alice.quiet(0.3)   # alice never hears her own lines
"""#, port: port)
    }

    // Rule 1: nicks that are not valid, and one held by a joined client, are refused and
    // closed; nobody else hears of them.
    @Test func invalidAndTakenNicksAreRefused() throws {
        let (server, port) = try startChatServer()
        defer { server.stop() }
        try runChatScript(#"""
alice = Chat(port, "alice"); alice.expect("* welcome alice, 1 online")
for bad in [b"\n", b"a b\n", b"x" * 33 + b"\n", "é\n".encode(), b"al!ce\n", b"/who\n"]:
    c = Chat(port); c.send(bad); c.expect("* invalid nick"); assert c.closed(), bad
taken = Chat(port, "alice"); taken.expect("* nick in use"); assert taken.closed()
ok = Chat(port, "x" * 32); ok.expect("* welcome " + "x" * 32 + ", 2 online")
alice.expect("* " + "x" * 32 + " joined")
assert alice.quiet(0.3)
"""#, port: port)
    }

    // Rule 3: 4,096 bytes is a line; 4,097 is too long (the client is told and dropped, the
    // others hear it left).
    @Test func lineLengthLimit() throws {
        let (server, port) = try startChatServer()
        defer { server.stop() }
        try runChatScript(#"""
alice = Chat(port, "alice"); alice.expect("* welcome alice, 1 online")
bob = Chat(port, "bob"); bob.expect("* welcome bob, 2 online"); alice.expect("* bob joined")
bob.send("y" * 4096); alice.expect("bob: " + "y" * 4096)
bob.send(b"w" * 4096 + b"\r\n"); alice.expect("bob: " + "w" * 4096)
bob.send("z" * 4097); bob.expect("* line too long"); assert bob.closed()
alice.expect("* bob left")
early = Chat(port); early.send("n" * 5000); early.expect("* line too long"); assert early.closed()
assert alice.quiet(0.3)
"""#, port: port)
    }

    // Rules 4 and 5: EOF or reset of a joined client is a leave; leaving before the nick says nothing;
    // an idle client (before or after its nick) is told and closed.
    @Test func eofAndIdleTimeout() throws {
        let (server, port) = try startChatServer(["--idle-timeout", "2"])
        defer { server.stop() }
        try runChatScript(#"""
alice = Chat(port, "alice"); alice.expect("* welcome alice, 1 online")
anon = Chat(port); anon.s.close()
bob = Chat(port, "bob"); bob.expect("* welcome bob, 2 online"); alice.expect("* bob joined")
bob.s.shutdown(socket.SHUT_WR); alice.expect("* bob left")
carl = Chat(port, "carl"); carl.expect("* welcome carl, 2 online"); alice.expect("* carl joined")
carl.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); carl.s.close()   # a reset
alice.expect("* carl left")
idle = Chat(port); idle.expect("* idle timeout"); assert idle.closed()
# alice has been quiet for a while too: she times out as well, nobody is left to hear it
alice.expect("* idle timeout"); assert alice.closed()
carol = Chat(port, "carol"); carol.expect("* welcome carol, 1 online")
dave = Chat(port, "dave"); dave.expect("* welcome dave, 2 online"); carol.expect("* dave joined")
for _ in range(3):
    time.sleep(0.5); dave.send("still here")
    carol.expect("dave: still here")
carol_gone = carol.line(timeout=5)
assert carol_gone == "* idle timeout", carol_gone
dave.expect("* carol left")
"""#, port: port)
    }

    // Rule 2: everyone sees messages in one order (two senders at full speed, two readers).
    @Test func everyoneSeesOneOrder() throws {
        let (server, port) = try startChatServer(["--max-queue", "100000"])
        defer { server.stop() }
        try runChatScript(#"""
r1 = Chat(port, "r1"); r1.expect("* welcome r1, 1 online")
r2 = Chat(port, "r2"); r2.expect("* welcome r2, 2 online"); r1.expect("* r2 joined")
s1 = Chat(port, "s1"); s1.expect("* welcome s1, 3 online")
s2 = Chat(port, "s2"); s2.expect("* welcome s2, 4 online")
r1.expect("* s1 joined", "* s2 joined"); r2.expect("* s1 joined", "* s2 joined")
def blast(c, name):
    c.send(b"".join(b"%s %d\n" % (name, i) for i in range(500)))
t1 = threading.Thread(target=blast, args=(s1, b"a")); t2 = threading.Thread(target=blast, args=(s2, b"b"))
t1.start(); t2.start(); t1.join(); t2.join()
seen1 = [r1.line() for _ in range(1000)]; seen2 = [r2.line() for _ in range(1000)]
assert seen1 == seen2, "the two readers saw different orders"
assert [l for l in seen1 if l.startswith("s1:")] == ["s1: a %d" % i for i in range(500)]
"""#, port: port)
    }

    // Rule 6: a client that never reads is dropped once over --max-queue waiting lines; the
    // others keep chatting at full speed and hear it left; the server's memory stays bounded.
    @Test func clientThatNeverReadsIsDropped() throws {
        let (server, port) = try startChatServer(["--max-queue", "50"])
        defer { server.stop() }
        try runChatScript(#"""
slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
slow.connect(("127.0.0.1", int(port))); slow.sendall(b"slow\n")
fast = Chat(port, "fast"); fast.expect("* welcome fast, 2 online")
reader = Chat(port, "reader"); reader.expect("* welcome reader, 3 online"); fast.expect("* reader joined")
line = "m" * 1000
left = False
# The kernel may take up to tcp_wmem's maximum (4 MiB by default) into the slow client's
# send buffer before the server's socket takes no more: with BBR it grows that far even
# though the client's window is closed. Send enough lines to get past it.
wmem_max = int(open("/proc/sys/net/ipv4/tcp_wmem").read().split()[2])
for i in range((wmem_max + (1 << 20)) // len(line) + 500):
    fast.send(line + str(i))
    got = reader.line()
    while got == "* slow left":
        left = True
        got = reader.line()
    assert got == "fast: " + line + str(i), got
    if left and i > 200:
        break
assert left, "the slow client was never dropped"
"""#, port: port)
        if let rss = memoryKiB(server.process.processIdentifier, "VmHWM") {
            #expect(rss < 200 * 1024, "peak RSS \(rss) KiB")
        }
    }

    // Rule 6 holds for a client's own replies too: one that never reads but sends commands
    // is dropped once its replies pile up.
    // Not under a sanitizer: the replies pile up only once the kernel's send buffer (up to
    // 4 MiB) is full, some 230,000 commands; under ThreadSanitizer on a loaded 2-core machine
    // the server did not get there within the client's 60 s.
    @Test(.disabled(if: Sanitizer.any, "needs ~230,000 commands handled: too slow under a sanitizer"))
    func nonReadingClientCannotPileUpReplies() throws {
        let (server, port) = try startChatServer(["--max-queue", "20"])
        defer { server.stop() }
        try runChatScript(#"""
watcher = Chat(port, "watcher"); watcher.expect("* welcome watcher, 1 online")
def until(wanted):
    # The watcher asks /who every half second so that it never idles out; skips the replies.
    deadline = time.time() + 60
    while time.time() < deadline:
        watcher.send("/who")
        try:
            got = watcher.line(timeout=0.5)
        except AssertionError:   # nothing within 0.5 s: ask again
            continue
        while got.startswith("* online:") and b"\n" in watcher.buf:
            got = watcher.line()
        if got == wanted:
            return
        assert got.startswith("* online:"), "unexpected %r" % got
    raise AssertionError("never saw %r" % wanted)
mute = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
mute.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
mute.connect(("127.0.0.1", int(port))); mute.sendall(b"mute\n")
until("* mute joined")
# A "* unknown command" reply for each, never read: sent until the server drops the mute
# client (a fixed count of commands could all fit in a large enough send buffer), for at
# most 60 s.
mute.settimeout(60)
deadline = time.time() + 60
try:
    while time.time() < deadline:
        mute.sendall(b"/x\n" * 100)
except (BrokenPipeError, ConnectionResetError):
    pass
until("* mute left")
"""#, port: port)
    }

    // Rule 5's "closed" holds for a client that stops reading: once it leaves (here /quit)
    // what is queued for it gets --idle-timeout to be written; then it is dropped.
    // The quitter sends /quit only once the watcher's /who was answered: the server handles a
    // connection's lines in order, so by then all 8 MB were queued for the quitter (sent at
    // once, a loaded machine let /quit overtake them: the short queue was flushed). The idle
    // timeout is 10 s: with 3, the quitter, silent while the 8 MB went through, was dropped
    // as idle first under ThreadSanitizer.
    @Test func leavingClientThatNeverReadsIsClosed() throws {
        let (server, port) = try startChatServer(["--max-queue", "100000", "--idle-timeout", "10"])
        defer { server.stop() }
        try runChatScript(#"""
watcher = Chat(port, "watcher"); watcher.expect("* welcome watcher, 1 online")
def until(wanted):
    got = watcher.line()
    assert got == wanted, "expected %r, got %r" % (wanted, got)
quitter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
quitter.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
quitter.connect(("127.0.0.1", int(port))); quitter.sendall(b"quitter\n")
until("* quitter joined")
watcher.send(("x" * 1000 + "\n") * 8000)   # 8 MB for the quitter: more than its socket takes
watcher.send("/who"); until("* online: quitter watcher")   # all 8 MB are queued by now
quitter.sendall(b"/quit\n")
until("* quitter left")
time.sleep(12)   # never read for more than --idle-timeout: the server gives up its flush
quitter.settimeout(20)
data = b""
try:
    while True:
        chunk = quitter.recv(65536)
        if not chunk:
            break
        data += chunk
except ConnectionResetError:
    pass
assert b"* bye" not in data, "the quitter's last lines were flushed: it was not dropped"
"""#, port: port)
    }

    // The same when what waits for the leaving client is short: its socket is full, and the
    // few KiB that did not fit sit in the transport's buffer, under the high-water mark, so
    // the writer is not held up: it closes at once, and the close waits for the client to
    // read. The flush deadline must still drop it after --idle-timeout. Before the fix the
    // deadline was cancelled as the connection's task returned, and a client that never read
    // kept its connection and the server's fd for as long as it liked (found while writing
    // Benchmarks/chaos_soak.py). Where the bytes are is read from /proc/net/tcp: what the
    // server wrote minus what the two kernels hold is in the transport.
    @Test func leavingClientThatNeverReadsIsClosedWhenLittleIsPending() throws {
        let (server, port) = try startChatServer(["--idle-timeout", "10"])
        defer { server.stop() }
        try runChatScript(#"""
watcher = Chat(port, "watcher"); watcher.expect("* welcome watcher, 1 online")
quitter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
quitter.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
quitter.connect(("127.0.0.1", int(port))); quitter.sendall(b"quitter\n")
watcher.expect("* quitter joined")
me = quitter.getsockname()[1]
def in_transport():
    # What the server wrote to the quitter minus what the kernels hold (the server's send
    # queue, the quitter's receive queue, from one read of /proc/net/tcp).
    server_tx = quitter_rx = None
    for row in open("/proc/net/tcp").readlines()[1:]:
        f = row.split()
        ends = (int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16))
        if ends == (int(port), me):
            server_tx = int(f[4].split(":")[0], 16)
        elif ends == (me, int(port)):
            quitter_rx = int(f[4].split(":")[1], 16)
    assert server_tx is not None and quitter_rx is not None, "sockets not in /proc/net/tcp"
    return written - server_tx - quitter_rx
def who():
    # A round trip through the server; the quitter's empty lines reach the watcher meanwhile.
    watcher.send("/who")
    while (got := watcher.line()) != "* online: quitter watcher":
        assert got == "quitter: ", got
written = len("* welcome quitter, 2 online\n")
batch = ("x" * 4000 + "\n") * 12   # 48 KB: under the transport's 64 KiB high-water mark
for _ in range(1000):
    quitter.sendall(b"\n")   # an empty line each round: the quitter is not idle
    watcher.send(batch); written += 12 * len("watcher: " + "x" * 4000 + "\n")
    who()
    if in_transport() > 0:
        who(); who()   # two more turns of the server's loop: no write was in progress
        if in_transport() > 0:
            break
else:
    raise AssertionError("the server's socket to the quitter never filled up")
quitter.sendall(b"/quit\n")
while (got := watcher.line()) != "* quitter left":
    assert got == "quitter: ", got
time.sleep(12)   # never read for more than --idle-timeout: the server gives up its flush
quitter.settimeout(20)
data = b""
try:
    while True:
        chunk = quitter.recv(65536)
        if not chunk:
            break
        data += chunk
except ConnectionResetError:
    pass
assert b"* bye" not in data and len(data) < written, \
    "the quitter got all %d bytes and its last lines: it was not dropped" % len(data)
"""#, port: port)
    }

    // Rule 7 and the examples contract: SIGTERM/SIGINT tell joined clients, close every
    // connection, and exit 0 soon (expectGracefulExit), even with a client that does not read.
    @Test(arguments: [SIGTERM, SIGINT])
    func signalShutsDownGracefully(signal: Int32) throws {
        let (server, port) = try startChatServer()
        defer { server.stop() }
        let client = try startPython(chatPrelude + #"""
a = Chat(port, "a"); a.expect("* welcome a, 1 online")
anon = Chat(port)
stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
stalled.connect(("127.0.0.1", int(port))); stalled.sendall(b"stalled\n")
a.expect("* stalled joined")
for i in range(300):
    a.send("x" * 1000)   # fills the stalled client's socket
time.sleep(0.5)
print("ready", flush=True)
a.expect("* server shutting down"); assert a.closed()
assert anon.closed() and anon.buf == b"", anon.buf
print("done", flush=True)
"""#, ["\(port)"], label: "chat clients")
        defer { client.stop() }
        let ready = client.readLine(timeout: 60)
        try #require(ready == "ready", "clients: \(ready ?? "nothing"); \(client.stderrText)")
        guard server.expectGracefulExit(after: signal) != nil else { return }
        #expect(client.readLine(timeout: 20) == "done", "\(client.stderrText)")
        #expect(server.stdoutText == "listening on 127.0.0.1:\(port)\n")
    }

    // The examples contract: a port in use is one stderr line naming the address and a
    // non-zero exit; a port out of range is a usage error (64).
    @Test func badAddressesAndArguments() throws {
        let (server, port) = try startChatServer()
        defer { server.stop() }
        let second = try runProduct("chat-server", ["--port", "\(port)"], timeout: 20)
        #expect(second.exit != nil && second.exit?.isSuccess == false && second.exit?.signaled == false, "\(second.summary)")
        #expect(isOneLine(second.stderr) && second.stderr.contains("127.0.0.1:\(port)"), "\(second.summary)")
        for arguments in [["--port", "70000"], ["--idle-timeout", "0"], ["--max-queue", "0"]] {
            let result = try runProduct("chat-server", arguments, timeout: 20)
            #expect(result.exit?.code == 64 && result.exit?.signaled == false, "\(arguments): \(result.summary)")
            #expect(result.stderr.hasPrefix("Error: "), "\(arguments): \(result.summary)")
        }
    }
}
