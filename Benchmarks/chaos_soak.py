#!/usr/bin/env python3
"""Chaos soak: the example servers under a mix of well-behaved and hostile clients.

Run it through Benchmarks/chaos-soak.sh (which builds the servers in release mode), or as

    python3 Benchmarks/chaos_soak.py --bin-dir .build/release [--minutes 10] [--seed N]

For --minutes (default 10) it starts tcp-, tls-, udp- and unix-echo-server and chat-server,
each with its open-file limit lowered to --nofile (default 256), and runs, concurrently and
with a bounded number of clients:

  normal clients   every byte they send must come back, in order, exactly once: random sizes
                   (1 B to 1 MiB), random write chunking and random read sizes; some end with
                   a half-close (shutdown(SHUT_WR), or close_notify over TLS) and read the rest,
                   and must then see EOF; UDP clients check every datagram (0 to 65,507 bytes);
                   chat groups of four check the protocol (welcome, /who, every message seen
                   by every other member, per sender in order, and in one order for all)
  chaos clients    resets in the middle of writes (SO_LINGER 0, close); half-closes; slowloris
                   (1 byte/s); clients that send a lot and never read; TLS clients that send
                   garbage, stop mid-handshake (and stall, which the server's handshake timeout
                   must end), or send records after close_notify; chat clients with bad nicks,
                   taken nicks, over-long lines, unknown commands, resets mid-line, one that
                   never reads (the server must drop it), one that quits without reading
                   while a talker floods the room (the server must close its side within
                   --idle-timeout); UDP floods that never read, empty and maximum-size
                   datagrams
  fd bursts        every --burst-every seconds one stream server gets more connections than
                   its fd limit allows, held for a few seconds (the server hits EMFILE) while a
                   normal client waits its turn; after the burst a normal client must succeed

It samples every server's open fds (/proc/PID/fd) and RSS (/proc/PID/status VmRSS) four
times a second. "start" is read after a warm-up (a few normal clients per server and one fd
burst per stream server, so that first-use allocations and the heap glibc keeps after a full
fd table of connections are not counted as growth; --no-warm-up-burst leaves the burst out),
"end" once every chaos client is gone, the fd counts are back and --settle seconds have
passed. When the end RSS fails its check, the server's malloc_trim(0) is called through gdb
(if installed) and the RSS after it reported, to tell a leak from memory malloc keeps. It prints a table and exits 1 if
any check fails:

  - every normal client succeeded: no mismatched, lost or extra byte, no error, no timeout
  - every chaos client that the protocol says the server must drop was dropped in time
    (stalled TLS handshakes, TLS garbage, chat slowloris, never-reading chat clients, chat
    clients that quit without reading), and TLS echoes data sent before a close_notify
    that is followed by more records (RFC 8446 6.1: data after it MUST be ignored)
  - each stream server really hit its fd limit during a burst and served afterwards
  - fds at the end == at start; RSS at the end within 10 % or 4 MiB of start
  - each server idle (under 2 % of a core) in the settle time after the chaos
  - no line on a server's stdout/stderr that is not listed in EXPECTED_LOG below
  - each server exits 0 within 2 s of SIGTERM (and unix-echo-server removes its socket)

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Server output that is expected under this load. Anything else on a server's stdout (after
# its "listening on" line) or stderr is reported and fails the run.
EXPECTED_LOG = [
    # Printed on SIGTERM by every example.
    (r"^signal \d+: closing$", "the shutdown line"),
    # swift-log warning from Server.acceptReady when accept4 fails with EMFILE during a burst.
    (r"\bwarning\b.*cannot accept more connections, retrying in ", "EMFILE back-off"),
]
EXPECTED_RE = [re.compile(pattern) for pattern, _ in EXPECTED_LOG]

CONNECT_TIMEOUT = 40.0   # a burst can keep a connection in the backlog for a while
IO_TIMEOUT = 90.0        # a normal client's whole exchange
TLS_HANDSHAKE_TIMEOUT = 5  # passed to tls-echo-server; stalled handshakes must end after it
CHAT_IDLE_TIMEOUT = 20   # passed to chat-server; chat slowloris clients must end after it
LINGER_RESET = struct.pack("ii", 1, 0)


class Failure(Exception):
    """A check failed: a normal client saw wrong, missing or extra data, or a server did not
    do what its protocol says."""


# ---------------------------------------------------------------------------------------
# Servers: start, sample, stop


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return -1.0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def tcp_closed(sock: socket.socket) -> bool:
    """Whether the kernel has closed the connection (the peer reset it): TCP_INFO's state is
    TCP_CLOSE. Reads nothing from the socket."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 7


def trimmed_rss(pid: int) -> int:
    """RSS after the server's malloc_trim(0), called through gdb: tells memory still in use
    (a leak) from freed memory that glibc keeps. -1 without gdb."""
    gdb = shutil.which("gdb")
    if not gdb:
        return -1
    try:
        subprocess.run([gdb, "-p", str(pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
                       capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return -1
    return rss_kib(pid)


def tcp_state(local_port: int, remote_port: int) -> str | None:
    """The state (hex, "01" = ESTABLISHED) of the IPv4 TCP socket local_port -> remote_port
    in /proc/net/tcp, None if there is none."""
    with open("/proc/net/tcp") as table:
        for row in table:
            fields = row.split()
            try:
                if (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)) == (local_port, remote_port):
                    return fields[3]
            except (IndexError, ValueError):
                continue
    return None


def udp_socket_drops(port: int) -> int:
    """Datagrams the kernel dropped on the sockets bound to `port` (their receive buffers
    were full): the last column of /proc/net/udp."""
    total = 0
    try:
        with open("/proc/net/udp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == port:
                    total += int(fields[-1])
    except (OSError, ValueError, IndexError, StopIteration):
        return -1
    return total


class Stats:
    """What one server's clients saw."""

    def __init__(self) -> None:
        self.bytes_verified = 0
        self.normal_ok = 0
        self.normal_failed = 0
        self.mismatches = 0
        self.losses = 0
        self.chaos = collections.Counter()      # chaos client kind -> how many ran
        self.checks_failed = 0                  # protocol checks on chaos clients
        self.notes = collections.Counter()      # informational outcomes
        self.problems: list[str] = []           # first few failure messages

    def problem(self, text: str) -> None:
        if len(self.problems) < 12:
            self.problems.append(text)


class Server:
    def __init__(self, name: str, argv: list[str], nofile: int, stream: bool, path: str | None = None):
        self.name = name
        self.argv = argv
        self.nofile = nofile
        self.stream = stream
        self.path = path
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.lock = threading.Lock()
        self.stats = Stats()
        self.fd_fresh = self.fd_start = self.fd_peak = self.fd_end = -1
        self.rss_fresh = self.rss_start = self.rss_peak = self.rss_end = -1
        self.rss_trimmed = -1
        self.idle_cpu = 0.0
        self.sampling = False
        self.emfile_warnings = 0
        self.exit_note = ""
        self.crashed = ""

    def start(self) -> None:
        nofile = self.nofile

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        env = dict(os.environ, SWIFT_BACKTRACE="enable=no")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=limit, env=env)
        first: list[str] = []
        ready = threading.Event()

        def read_stdout() -> None:
            assert self.proc and self.proc.stdout
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                if not ready.is_set():
                    first.append(line)
                    ready.set()
                else:
                    self.log_line("stdout", line)
            ready.set()

        def read_stderr() -> None:
            assert self.proc and self.proc.stderr
            for raw in self.proc.stderr:
                self.log_line("stderr", raw.decode(errors="replace").rstrip("\n"))

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        if not ready.wait(30) or not first:
            raise SystemExit(f"{self.name} did not start: {self.output[-3:]}")
        match = re.fullmatch(r"listening on (.+)", first[0])
        if not match:
            raise SystemExit(f"{self.name}: unexpected first line {first[0]!r}")
        where = match.group(1)
        if self.path is None:
            host, port = where.rsplit(":", 1)
            self.host, self.port = host.strip("[]"), int(port)

    def log_line(self, stream: str, line: str) -> None:
        with self.lock:
            self.output.append(f"{stream}: {line}")
            if "cannot accept more connections" in line:
                self.emfile_warnings += 1

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def sample(self) -> tuple[int, int]:
        fds, rss = fd_count(self.pid), rss_kib(self.pid)
        if self.sampling:
            self.fd_peak = max(self.fd_peak, fds)
            self.rss_peak = max(self.rss_peak, rss)
        return fds, rss

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def unexpected_output(self) -> list[str]:
        with self.lock:
            lines = list(self.output)
        return [line for line in lines if not any(rx.search(line.split(": ", 1)[1]) for rx in EXPECTED_RE)]

    def stop(self) -> None:
        """SIGTERM: the examples contract says exit 0 within 2 s."""
        assert self.proc
        if self.proc.poll() is not None:
            self.exit_note = f"already exited with {self.proc.returncode}"
            return
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_note = "did not exit within 10 s of SIGTERM (killed)"
            return
        took = time.monotonic() - began
        if code != 0:
            self.exit_note = f"exit status {code} after SIGTERM"
        elif took > 2.0:
            self.exit_note = f"exited {took:.1f} s after SIGTERM (> 2 s)"
        elif self.path and os.path.exists(self.path):
            self.exit_note = f"left its socket file {self.path}"


# ---------------------------------------------------------------------------------------
# Client helpers


class Soak:
    def __init__(self, args: argparse.Namespace, servers: dict[str, Server]):
        self.args = args
        self.servers = servers
        self.rng = random.Random(args.seed)
        self.deadline = 0.0
        self.ids = itertools.count(1)
        self.client_ctx = ssl.create_default_context(cafile=str(ROOT / "Certificates/ca.crt"))

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def child_rng(self) -> random.Random:
        return random.Random(self.rng.getrandbits(64))

    # -- connecting ----------------------------------------------------------------------

    async def open_stream(self, srv: Server, tls: bool = False):
        if srv.path:
            return await asyncio.open_unix_connection(sock=await self.raw_socket(srv))
        if tls:
            coro = asyncio.open_connection(srv.host, srv.port, ssl=self.client_ctx, server_hostname="localhost",
                                           ssl_handshake_timeout=CONNECT_TIMEOUT)
        else:
            coro = asyncio.open_connection(srv.host, srv.port)
        return await asyncio.wait_for(coro, CONNECT_TIMEOUT)

    async def raw_socket(self, srv: Server, rcvbuf: int | None = None) -> socket.socket:
        family = socket.AF_UNIX if srv.path else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            if srv.path:
                # A Unix socket's connect fails with EAGAIN while the listen queue is full (a
                # TCP one waits): try again until the timeout, as a patient client would.
                give_up = time.monotonic() + CONNECT_TIMEOUT
                while True:
                    try:
                        sock.connect(srv.path)
                        break
                    except BlockingIOError:
                        if time.monotonic() > give_up:
                            raise TimeoutError("the Unix socket's listen queue stayed full") from None
                        await asyncio.sleep(0.05)
            else:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (srv.host, srv.port)),
                                       CONNECT_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def reset(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass
        sock.close()

    @staticmethod
    def reset_writer(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            except OSError:
                pass
        writer.transport.abort()

    @staticmethod
    async def close_writer(writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 10)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass

    async def read_until_closed(self, sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
        """Reads until EOF or reset; (closed by the peer within `timeout`, bytes read)."""
        loop = asyncio.get_running_loop()
        got = bytearray()
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False, bytes(got)
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), left)
            except asyncio.TimeoutError:
                return False, bytes(got)
            except OSError:
                return True, bytes(got)
            if not data:
                return True, bytes(got)
            got += data

    # -- lanes ---------------------------------------------------------------------------

    async def lane(self, srv: Server, body, gap: float = 0.02) -> None:
        """Runs `body` again and again until the deadline, a short random gap apart."""
        rng = self.child_rng()
        while not self.over():
            if not srv.alive():
                return
            try:
                await body(srv, rng)
            except Exception as error:   # a defect of this script: report it, go on
                srv.stats.checks_failed += 1
                srv.stats.problem(f"soak script error: {type(error).__name__}: {error}")
            await asyncio.sleep(rng.uniform(0, gap))

    async def normal(self, srv: Server, body) -> None:
        """Runs one normal client and books its outcome."""
        st = srv.stats
        try:
            verified = await asyncio.wait_for(body, IO_TIMEOUT)
        except Failure as error:
            st.normal_failed += 1
            if "mismatch" in str(error):
                st.mismatches += 1
            else:
                st.losses += 1
            st.problem(f"normal client: {error}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError, EOFError) as error:
            st.normal_failed += 1
            st.problem(f"normal client: {type(error).__name__}: {error}")
        else:
            st.normal_ok += 1
            st.bytes_verified += verified

    async def chaos(self, srv: Server, kind: str, body) -> None:
        """Runs one chaos client: errors it meets are expected, failed checks are not."""
        srv.stats.chaos[kind] += 1
        try:
            await asyncio.wait_for(body, IO_TIMEOUT + 30)
        except Failure as error:
            srv.stats.checks_failed += 1
            srv.stats.problem(f"{kind}: {error}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError, EOFError) as error:
            srv.stats.notes[f"{kind}: {type(error).__name__}"] += 1

    # -- stream echo: normal clients ----------------------------------------------------------

    async def echo_exchange(self, srv: Server, rng: random.Random, tls: bool) -> int:
        size = int(2 ** rng.uniform(0, 20))
        payload = rng.randbytes(size)
        view = memoryview(payload)
        half_close = (not tls) and rng.random() < 0.4
        reader, writer = await self.open_stream(srv, tls)
        try:
            async def send() -> None:
                pos = 0
                while pos < size:
                    n = min(size - pos, int(2 ** rng.uniform(0, 16)))
                    writer.write(view[pos:pos + n])
                    pos += n
                    roll = rng.random()
                    if roll < 0.3:
                        await writer.drain()
                    elif roll < 0.33:
                        await asyncio.sleep(rng.uniform(0, 0.005))
                await writer.drain()
                if half_close:
                    writer.write_eof()

            async def receive() -> int:
                got = 0
                while got < size:
                    chunk = await reader.read(int(2 ** rng.uniform(0, 17)))
                    if not chunk:
                        raise Failure(f"loss: EOF after {got} of {size} bytes")
                    if chunk != view[got:got + len(chunk)]:
                        raise Failure(f"mismatch in bytes {got}..{got + len(chunk)} of {size}")
                    got += len(chunk)
                if half_close:
                    extra = await reader.read(65536)
                    if extra:
                        raise Failure(f"mismatch: {len(extra)} extra bytes after the {size}-byte echo")
                return got

            _, got = await asyncio.gather(send(), receive())
            return got
        finally:
            await self.close_writer(writer)

    async def tls_half_close(self, srv: Server, rng: random.Random) -> int:
        """TLS 1.3: data, then close_notify (a half-close); the echo and the server's
        close_notify must follow."""
        size = int(2 ** rng.uniform(0, 18))
        payload = rng.randbytes(size)
        tls = await RawTLS.connect(self, srv)
        try:
            await tls.handshake()
            pos = 0
            while pos < size:
                n = min(size - pos, int(2 ** rng.uniform(0, 15)))
                tls.obj.write(payload[pos:pos + n])
                pos += n
                await tls.flush()
            try:
                tls.obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            await tls.flush()
            echoed = await tls.read_to_close_notify(size + 1)
            if echoed != payload:
                if len(echoed) < size and payload.startswith(echoed):
                    raise Failure(f"loss: {len(echoed)} of {size} bytes before close_notify")
                raise Failure(f"mismatch in a {size}-byte echo before close_notify ({len(echoed)} bytes back)")
            return size
        finally:
            tls.sock.close()

    async def slowloris_echo(self, srv: Server, rng: random.Random) -> int:
        """One byte a second for up to 40 s, every byte's echo checked (tcp, unix)."""
        loop = asyncio.get_running_loop()
        sock = await self.raw_socket(srv)
        try:
            sent = 0
            until = min(time.monotonic() + rng.uniform(10, 40), self.deadline)
            while time.monotonic() < until:
                byte = bytes([rng.randrange(256)])
                await loop.sock_sendall(sock, byte)
                sent += 1
                back = await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
                if back != byte:
                    raise Failure(f"mismatch: slowloris byte {sent}: sent {byte!r}, got {back!r}")
                await asyncio.sleep(1)
            return sent
        finally:
            sock.close()

    async def slowloris_tls(self, srv: Server, rng: random.Random) -> int:
        """A TLS client whose records carry one byte each, a second apart; echo checked."""
        tls = await RawTLS.connect(self, srv)
        try:
            await tls.handshake()
            sent = 0
            until = min(time.monotonic() + rng.uniform(10, 40), self.deadline)
            while time.monotonic() < until:
                byte = bytes([rng.randrange(256)])
                tls.obj.write(byte)
                await tls.flush()
                sent += 1
                back = await tls.read_exactly(1, 10)
                if back != byte:
                    raise Failure(f"mismatch: TLS slowloris byte {sent}: sent {byte!r}, got {back!r}")
                await asyncio.sleep(1)
            return sent
        finally:
            tls.sock.close()

    # -- stream echo: chaos --------------------------------------------------------------------

    async def reset_mid_write(self, srv: Server, rng: random.Random, tls: bool) -> None:
        reader, writer = await self.open_stream(srv, tls)
        total = int(2 ** rng.uniform(8, 22))
        view = memoryview(rng.randbytes(total))
        cut = rng.randrange(total + 1)
        reading = rng.random() < 0.5

        async def drain_reader() -> None:
            while await reader.read(65536):
                pass

        reader_task = asyncio.ensure_future(drain_reader()) if reading else None
        try:
            pos = 0
            while pos < cut:
                n = min(cut - pos, int(2 ** rng.uniform(4, 16)))
                writer.write(view[pos:pos + n])
                pos += n
                try:
                    await asyncio.wait_for(writer.drain(), 2)
                except asyncio.TimeoutError:
                    break   # the server stopped reading: we don't read either
        finally:
            self.reset_writer(writer)
            if reader_task:
                reader_task.cancel()
                await asyncio.gather(reader_task, return_exceptions=True)

    async def never_read(self, srv: Server, rng: random.Random, tls: bool) -> None:
        """Sends up to 32 MiB without reading a byte of the echo, until the server stops
        taking it; then closes or resets."""
        loop = asyncio.get_running_loop()
        if tls:
            reader, writer = await self.open_stream(srv, True)
            chunk = rng.randbytes(65536)
            try:
                for _ in range(512):
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), 3)
            except asyncio.TimeoutError:
                srv.stats.notes["never-read: server stopped reading"] += 1
            await asyncio.sleep(rng.uniform(0, 3))
            if rng.random() < 0.5:
                self.reset_writer(writer)
            else:
                writer.transport.abort()
            return
        sock = await self.raw_socket(srv, rcvbuf=rng.choice([None, 4096]))
        chunk = rng.randbytes(65536)
        try:
            for _ in range(512):
                await asyncio.wait_for(loop.sock_sendall(sock, chunk), 3)
        except asyncio.TimeoutError:
            srv.stats.notes["never-read: server stopped reading"] += 1
        finally:
            await asyncio.sleep(rng.uniform(0, 3))
            if rng.random() < 0.5:
                self.reset(sock)
            else:
                sock.close()

    async def half_close_now(self, srv: Server, rng: random.Random) -> None:
        """shutdown(SHUT_WR) before a byte, or after a few: the echo and EOF must follow."""
        loop = asyncio.get_running_loop()
        sock = await self.raw_socket(srv)
        try:
            data = rng.randbytes(rng.choice([0, 1, 100, 5000]))
            await loop.sock_sendall(sock, data)
            sock.shutdown(socket.SHUT_WR)
            closed, got = await self.read_until_closed(sock, 20)
            if not closed:
                raise Failure("no EOF 20 s after a half-close")
            if got != data:
                raise Failure(f"mismatch: half-close echo {len(got)} bytes for {len(data)}")
        finally:
            sock.close()

    async def connect_and_leave(self, srv: Server, rng: random.Random) -> None:
        sock = await self.raw_socket(srv)
        if rng.random() < 0.5:
            self.reset(sock)
        else:
            sock.close()

    # -- TLS chaos ---------------------------------------------------------------------------

    async def tls_garbage(self, srv: Server, rng: random.Random) -> None:
        """Not TLS at all, or a record header followed by noise: the server must close."""
        loop = asyncio.get_running_loop()
        sock = await self.raw_socket(srv)
        try:
            style = rng.randrange(3)
            if style == 0:
                data = rng.randbytes(rng.randrange(1, 4096))
            elif style == 1:
                body = rng.randbytes(rng.randrange(0, 2048))
                data = bytes([0x16, 0x03, 0x01]) + struct.pack(">H", len(body)) + body
            else:
                data = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
            await loop.sock_sendall(sock, data)
            closed, _ = await self.read_until_closed(sock, TLS_HANDSHAKE_TIMEOUT + 10)
            if not closed:
                raise Failure(f"garbage ({len(data)} bytes, style {style}) not dropped within "
                              f"{TLS_HANDSHAKE_TIMEOUT + 10} s")
        finally:
            sock.close()

    async def tls_mid_handshake(self, srv: Server, rng: random.Random) -> None:
        """Part of a ClientHello, a ClientHello and no more, or no Finished: then leave,
        reset, or stall (the server's handshake timeout must end the connection)."""
        tls = await RawTLS.connect(self, srv)
        try:
            try:
                tls.obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            hello = tls.out.read()
            stage = rng.randrange(3)
            if stage == 0:
                await tls.send(hello[:rng.randrange(1, len(hello))])
            elif stage == 1:
                await tls.send(hello)
            else:
                await tls.send(hello)
                await tls.receive(10)   # the server's flight; the client's Finished is never sent
            ending = rng.randrange(3)
            if ending == 0:
                tls.sock.close()
            elif ending == 1:
                self.reset(tls.sock)
            else:
                began = time.monotonic()
                closed, _ = await self.read_until_closed(tls.sock, TLS_HANDSHAKE_TIMEOUT + 10)
                if not closed:
                    raise Failure(f"a handshake stalled at stage {stage} was not dropped within "
                                  f"{TLS_HANDSHAKE_TIMEOUT + 10} s")
                srv.stats.notes["stalled handshake dropped"] += 1
                if time.monotonic() - began < TLS_HANDSHAKE_TIMEOUT - 1 and stage != 0:
                    srv.stats.notes["stalled handshake dropped before the timeout"] += 1
        finally:
            tls.sock.close()

    async def tls_after_close_notify(self, srv: Server, rng: random.Random) -> None:
        """Data, close_notify, then more: a replay of a record already sent, a forged
        application-data record, or noise. RFC 8446 6.1: data after a closure alert MUST be
        ignored, so the echo of the data must still come back complete."""
        tls = await RawTLS.connect(self, srv)
        try:
            await tls.handshake()
            data = rng.randbytes(rng.randrange(1, 20000))
            tls.obj.write(data)
            records = tls.out.read()
            await tls.send(records)
            try:
                tls.obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            await tls.flush()
            style = rng.randrange(3)
            if style == 0:
                await tls.send(records[:rng.randrange(1, len(records) + 1)])
            elif style == 1:
                body = rng.randbytes(rng.randrange(17, 600))
                await tls.send(bytes([0x17, 0x03, 0x03]) + struct.pack(">H", len(body)) + body)
            else:
                await tls.send(rng.randbytes(rng.randrange(1, 3000)))
            try:
                await tls.read_to_close_notify(len(data) + 1)
                ending = "close_notify"
            except (OSError, ssl.SSLError, EOFError) as error:
                ending = type(error).__name__
            if bytes(tls.plaintext) != data:
                raise Failure(f"the echo of {len(data)} bytes sent before close_notify came back as "
                              f"{len(tls.plaintext)} bytes (then {ending}), after style-{style} bytes")
            srv.stats.notes[f"after close_notify: echo complete, then {ending}"] += 1
        finally:
            tls.sock.close()

    # -- UDP -----------------------------------------------------------------------------------

    async def udp_exchange(self, srv: Server, rng: random.Random) -> int:
        """Datagrams of 0 to 65,507 bytes, up to four in flight; each echo checked."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.connect((srv.host, srv.port))
        verified = 0
        try:
            count = rng.randrange(20, 200)
            if rng.random() < 0.1:
                await loop.sock_sendall(sock, b"")
                back = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                if back != b"":
                    raise Failure(f"mismatch: {len(back)} bytes back for an empty datagram")
            pending: dict[int, bytes] = {}
            sent = 0
            while sent < count or pending:
                # Up to four datagrams and 48 KiB in flight: the server's socket buffer
                # (rmem_default, 208 KiB) is shared by every client.
                while sent < count and len(pending) < 4 and sum(map(len, pending.values())) < 48 * 1024:
                    size = min(65507, 8 + int(2 ** rng.uniform(0, 16)))
                    datagram = struct.pack(">Q", sent) + rng.randbytes(size - 8)
                    pending[sent] = datagram
                    await loop.sock_sendall(sock, datagram)
                    sent += 1
                try:
                    back = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                except asyncio.TimeoutError:
                    raise Failure(f"loss: {len(pending)} datagrams not echoed within 5 s") from None
                if len(back) < 8:
                    raise Failure(f"mismatch: a {len(back)}-byte datagram came back")
                seq = struct.unpack(">Q", back[:8])[0]
                expected = pending.pop(seq, None)
                if expected != back:
                    raise Failure(f"mismatch: datagram {seq} ({len(back)} bytes) not as sent")
                verified += len(back)
            return verified
        finally:
            sock.close()

    async def udp_chaos(self, srv: Server, rng: random.Random) -> None:
        loop = asyncio.get_running_loop()
        kind = rng.choice(["flood-no-read", "empty", "max-size", "send-and-close"])
        srv.stats.chaos[f"udp {kind}"] += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        target = (srv.host, srv.port)
        try:
            if kind == "flood-no-read":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                for burst in range(rng.randrange(5, 40)):
                    for _ in range(20):
                        sock.sendto(rng.randbytes(rng.randrange(0, 1500)), target)
                    await asyncio.sleep(0.05)
            elif kind == "empty":
                for _ in range(rng.randrange(1, 50)):
                    sock.sendto(b"", target)
            elif kind == "max-size":
                for _ in range(rng.randrange(1, 5)):
                    sock.sendto(rng.randbytes(65507), target)
                    await asyncio.sleep(0.05)
            else:
                sock.sendto(rng.randbytes(rng.randrange(1, 2000)), target)
        except BlockingIOError:
            srv.stats.notes["udp chaos: own send buffer full"] += 1
        finally:
            sock.close()

    # -- chat ----------------------------------------------------------------------------------

    async def chat_join(self, srv: Server, nick: str):
        reader, writer = await self.open_stream(srv)
        writer.write(nick.encode() + b"\n")
        line = await asyncio.wait_for(reader.readline(), 30)
        match = re.fullmatch(rb"\* welcome (\S+), (\d+) online\n", line)
        if not match or match.group(1) != nick.encode():
            await self.close_writer(writer)
            raise Failure(f"mismatch: {nick} joined and got {line[:80]!r}")
        return reader, writer

    async def chat_group(self, srv: Server, rng: random.Random) -> int:
        """Four members: each sends its lines (and /who), every other member must see each
        of them, per sender in order, and any two members must see the lines of the other two
        in the same order. Then /quit: `* bye`, then EOF."""
        gid = next(self.ids)
        nicks = [f"g{gid}{c}" for c in "abcd"]
        members = []
        try:
            for nick in nicks:
                members.append(await self.chat_join(srv, nick))
            plans = []
            for nick in nicks:
                texts = []
                for i in range(rng.randrange(1, 25)):
                    if rng.random() < 0.1:
                        texts.append(b"")
                    else:
                        body = bytes(rng.randrange(32, 127) for _ in range(int(2 ** rng.uniform(0, 11))))
                        texts.append(b"%d " % i + body.replace(b"/", b"|"))
                plans.append(texts)
            results = await asyncio.gather(*(
                self.chat_member(srv, rng, nicks, i, members[i], plans) for i in range(4)))
        finally:
            for _, writer in members:
                await self.close_writer(writer)
        # Everyone saw everyone else's lines, per sender exactly as sent.
        verified = 0
        for i, seen in enumerate(results):
            for j, nick in enumerate(nicks):
                if j == i:
                    continue
                texts = [text for sender, text in seen if sender == j]
                if texts != plans[j]:
                    raise Failure(f"mismatch: {nicks[i]} saw {len(texts)} lines of {nick}, "
                                  f"{nick} sent {len(plans[j])} (first difference at "
                                  f"{next((k for k, (a, b) in enumerate(zip(texts, plans[j])) if a != b), min(len(texts), len(plans[j])))})")
                verified += sum(len(text) for text in texts)
        # One order for all: two members see the other two's lines interleaved the same way.
        for a, b in itertools.combinations(range(4), 2):
            def order(seen):
                counters = collections.Counter()
                out = []
                for sender, _ in seen:
                    if sender not in (a, b):
                        out.append((sender, counters[sender]))
                        counters[sender] += 1
                return out
            if order(results[a]) != order(results[b]):
                raise Failure(f"mismatch: {nicks[a]} and {nicks[b]} saw the others' lines in different orders")
        return verified

    async def chat_member(self, srv, rng, nicks, me, stream, plans) -> list[tuple[int, bytes]]:
        reader, writer = stream
        mine = plans[me]
        index = {nick.encode(): i for i, nick in enumerate(nicks)}
        whos = 0
        script: list[bytes] = []
        for text in mine:
            if rng.random() < 0.1:
                script.append(b"/who")
                whos += 1
            script.append(text)
        script.append(b"end")
        wire = b"".join(line + (b"\r\n" if rng.random() < 0.2 else b"\n") for line in script)

        async def send() -> None:
            pos = 0
            while pos < len(wire):
                n = int(2 ** rng.uniform(0, 12))
                writer.write(wire[pos:pos + n])
                pos += n
                if rng.random() < 0.2:
                    await writer.drain()
            await writer.drain()

        seen: list[tuple[int, bytes]] = []
        ended: set[int] = set()
        who_replies = 0
        sender = asyncio.ensure_future(send())
        try:
            while len(ended) < 3 or who_replies < whos:
                line = await asyncio.wait_for(reader.readline(), 60)
                if not line.endswith(b"\n"):
                    raise Failure(f"loss: {nicks[me]} got EOF in the middle of the chat ({line[:60]!r})")
                line = line[:-1]
                if line.startswith(b"* online: "):
                    names = line[len(b"* online: "):].split(b" ")
                    if names != sorted(names) or not all(n.encode() in names for n in nicks):
                        raise Failure(f"mismatch: /who gave {line[:200]!r}")
                    who_replies += 1
                    continue
                if line.startswith(b"* "):
                    continue   # joins and leaves of anyone, replies we do not track
                nick, sep, text = line.partition(b": ")
                if not sep:
                    raise Failure(f"mismatch: {nicks[me]} got a line that is neither chat nor notice: {line[:80]!r}")
                who = index.get(nick)
                if who is None:
                    continue   # another group or a chaos client
                if who == me:
                    raise Failure(f"mismatch: {nicks[me]} was sent its own line")
                if text == b"end":
                    ended.add(who)
                elif who in ended:
                    raise Failure(f"mismatch: {nicks[me]} saw a line of {nick.decode()} after its end")
                else:
                    seen.append((who, text))
            await sender
            writer.write(b"/quit\n")
            while True:
                line = await asyncio.wait_for(reader.readline(), 30)
                if not line:
                    raise Failure(f"loss: {nicks[me]} got EOF before `* bye`")
                if line == b"* bye\n":
                    break
            rest = await asyncio.wait_for(reader.read(65536), 30)
            if rest:
                raise Failure(f"mismatch: {nicks[me]} got {rest[:60]!r} after `* bye`")
            return seen
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def chat_expect(self, reader: asyncio.StreamReader, wanted: bytes, timeout: float) -> None:
        """Reads lines until `wanted`, then EOF must follow (other lines before it are
        broadcasts)."""
        end = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(reader.readline(), max(0.1, end - time.monotonic()))
            if not line:
                raise Failure(f"EOF before {wanted!r}")
            if line == wanted:
                break
        rest = await asyncio.wait_for(reader.read(65536), max(0.1, end - time.monotonic()))
        if rest:
            raise Failure(f"{rest[:60]!r} after {wanted!r}, where the server should close")

    async def chat_chaos(self, srv: Server, rng: random.Random) -> None:
        kind = rng.choice(["never-read", "invalid-nick", "nick-in-use", "long-line", "unknown-command",
                           "reset-mid-line", "half-close", "garbage", "reset-mid-write"])
        await self.chaos(srv, f"chat {kind}", self.chat_chaos_one(srv, rng, kind))

    async def chat_chaos_one(self, srv: Server, rng: random.Random, kind: str) -> None:
        loop = asyncio.get_running_loop()
        n = next(self.ids)
        if kind == "never-read":
            # Joins and asks /who over and over, never reading: its replies pile up (in the
            # kernel's buffers, then in its queue) and the server must drop it (max-queue).
            # Whether it was dropped is read from TCP_INFO, which consumes nothing.
            sock = await self.raw_socket(srv, rcvbuf=4096)
            try:
                await loop.sock_sendall(sock, b"nr%d\n" % n)
                batch = b"/who\n" * 200
                began = time.monotonic()
                sent = stalled = 0
                while time.monotonic() - began < 120:
                    if tcp_closed(sock):
                        srv.stats.notes["chat never-read: dropped"] += 1
                        return
                    try:
                        await asyncio.wait_for(loop.sock_sendall(sock, batch), 0.5)
                        sent += 200
                    except asyncio.TimeoutError:
                        stalled += 1   # the server is behind, or does not read: keep watching
                    except OSError:
                        srv.stats.notes["chat never-read: dropped"] += 1
                        return
                    await asyncio.sleep(0.01)
                raise Failure(f"a client that never reads was not dropped after {sent:,} /who lines in 120 s "
                              f"({stalled} half-second send stalls)")
            finally:
                self.reset(sock)
        if kind == "quit-never-read":
            # A talker floods the room (up to 3.2 MB) while this client never reads; it then
            # quits, still not reading, and stays connected. Once --idle-timeout has passed
            # the server must have given up its flush and closed its side (the kernel may
            # still hold the bytes: FIN_WAIT1 is fine, ESTABLISHED is a held fd).
            sock = await self.raw_socket(srv, rcvbuf=4096)
            try:
                await loop.sock_sendall(sock, b"qnr%d\n" % n)
                reader, writer = await self.chat_join(srv, f"talk{n}")
                try:
                    writer.write((b"t" * 4000 + b"\n") * rng.randrange(0, 800) + b"/quit\n")
                    await self.chat_expect(reader, b"* bye\n", 60)
                finally:
                    await self.close_writer(writer)
                await loop.sock_sendall(sock, b"/quit\n")
                await asyncio.sleep(CHAT_IDLE_TIMEOUT + 5)
                state = await asyncio.get_running_loop().run_in_executor(
                    None, tcp_state, srv.port, sock.getsockname()[1])
                if state == "01":
                    raise Failure(f"the server still holds the connection of a client that quit without "
                                  f"reading, {CHAT_IDLE_TIMEOUT + 5} s later")
                srv.stats.notes["chat quit-never-read: server side closed"] += 1
            finally:
                self.reset(sock)
            return
        if kind == "invalid-nick":
            reader, writer = await self.open_stream(srv)
            try:
                writer.write(rng.choice([b"bad nick\n", b"\n", b"x" * 33 + b"\n", b"caf\xc3\xa9\n", b"a/b\r\n"]))
                await self.chat_expect(reader, b"* invalid nick\n", 20)
            finally:
                await self.close_writer(writer)
            return
        if kind == "nick-in-use":
            reader, writer = await self.chat_join(srv, f"dup{n}")
            try:
                r2, w2 = await self.open_stream(srv)
                try:
                    w2.write(b"dup%d\n" % n)
                    await self.chat_expect(r2, b"* nick in use\n", 20)
                finally:
                    await self.close_writer(w2)
                writer.write(b"/quit\n")
                await self.chat_expect(reader, b"* bye\n", 20)
            finally:
                await self.close_writer(writer)
            return
        if kind == "long-line":
            reader, writer = await self.chat_join(srv, f"long{n}")
            try:
                writer.write(b"y" * rng.randrange(4097, 20000) + b"\n")
                await self.chat_expect(reader, b"* line too long\n", 20)
            finally:
                await self.close_writer(writer)
            return
        if kind == "unknown-command":
            reader, writer = await self.chat_join(srv, f"cmd{n}")
            try:
                writer.write(b"/frobnicate\n")
                while (line := await asyncio.wait_for(reader.readline(), 20)) != b"* unknown command\n":
                    if not line:
                        raise Failure("EOF before `* unknown command`")
                writer.write(b"/quit\n")
                await self.chat_expect(reader, b"* bye\n", 20)
            finally:
                await self.close_writer(writer)
            return
        if kind in ("reset-mid-line", "reset-mid-write"):
            reader, writer = await self.chat_join(srv, f"rst{n}")
            if kind == "reset-mid-line":
                writer.write(b"half a line that never ends")
            else:
                writer.write(b"".join(b"line %d\n" % i for i in range(rng.randrange(1, 300))) + b"and a piece")
            await asyncio.sleep(rng.uniform(0, 0.2))
            self.reset_writer(writer)
            return
        if kind == "half-close":
            reader, writer = await self.chat_join(srv, f"hc{n}")
            writer.write(b"a last line\nand a piece")
            writer.write_eof()
            try:
                while await asyncio.wait_for(reader.read(65536), 30):
                    pass   # broadcasts, until the server closes
            finally:
                await self.close_writer(writer)
            return
        # garbage: binary noise, sometimes with newlines; read what comes for a moment, leave
        sock = await self.raw_socket(srv)
        try:
            await loop.sock_sendall(sock, rng.randbytes(rng.randrange(1, 9000)))
            await self.read_until_closed(sock, rng.uniform(0, 2))
        finally:
            self.reset(sock) if rng.random() < 0.5 else sock.close()

    async def chat_slowloris(self, srv: Server, rng: random.Random) -> None:
        """Joins one byte a second, then trickles a line that never ends: the idle timeout
        must end it with `* idle timeout`."""
        loop = asyncio.get_running_loop()
        sock = await self.raw_socket(srv)
        try:
            for byte in b"slow%d\n" % next(self.ids):
                await loop.sock_sendall(sock, bytes([byte]))
                await asyncio.sleep(1)
            began = time.monotonic()
            next_byte = began
            got = bytearray()
            while time.monotonic() - began < CHAT_IDLE_TIMEOUT + 15:
                if time.monotonic() >= next_byte:
                    next_byte += 1
                    try:
                        await loop.sock_sendall(sock, b"z")
                    except OSError:
                        break
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 65536),
                                                  max(0.01, next_byte - time.monotonic()))
                except asyncio.TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                got += data
            if b"\n* idle timeout\n" not in b"\n" + bytes(got):
                raise Failure(f"slowloris not ended by the idle timeout within {CHAT_IDLE_TIMEOUT + 15} s "
                              f"(last bytes {bytes(got[-60:])!r})")
            srv.stats.notes["chat slowloris: idle timeout"] += 1
        finally:
            sock.close()

    # -- the fd burst --------------------------------------------------------------------------

    async def burst(self, srv: Server, rng: random.Random) -> None:
        """More connections than the server's fd limit, held for 3 s while a normal client
        waits its turn; then a normal client must be served."""
        loop = asyncio.get_running_loop()
        count = srv.nofile + 64
        srv.stats.chaos["fd burst"] += 1
        before = srv.emfile_warnings
        socks: list[socket.socket] = []

        async def one() -> None:
            family = socket.AF_UNIX if srv.path else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            socks.append(sock)
            try:
                if srv.path:
                    # EAGAIN while the listen queue is full: try again for up to 5 s.
                    give_up = time.monotonic() + 5
                    while True:
                        try:
                            sock.connect(srv.path)
                            break
                        except BlockingIOError:
                            if time.monotonic() > give_up:
                                break
                            await asyncio.sleep(0.05)
                else:
                    await asyncio.wait_for(loop.sock_connect(sock, (srv.host, srv.port)), 5)
            except (OSError, asyncio.TimeoutError):
                pass

        normal_during = None
        try:
            await asyncio.gather(*(one() for _ in range(count)))
            normal_during = asyncio.ensure_future(self.normal(srv, self.exchange_for(srv, rng)))
            await asyncio.sleep(3)
        finally:
            for sock in socks:
                self.reset(sock) if rng.random() < 0.5 else sock.close()
        if normal_during:
            await normal_during
        await self.normal(srv, self.exchange_for(srv, rng))
        if srv.emfile_warnings > before:
            srv.stats.notes["fd burst: EMFILE hit"] += 1
        fds, rss = srv.sample()
        log(f"fd burst of {count} on {srv.name} done: EMFILE logged {srv.emfile_warnings - before} times, "
            f"now {fds} fds, {mib(rss)} MiB")

    def exchange_for(self, srv: Server, rng: random.Random):
        if srv.name == "chat-server":
            return self.chat_group(srv, rng)
        return self.echo_exchange(srv, rng, tls=srv.name == "tls-echo-server")

    async def burst_lane(self, stream_servers: list[Server], every: float) -> None:
        rng = self.child_rng()
        for srv in itertools.cycle(stream_servers):
            await asyncio.sleep(every)
            if self.over():
                return
            if srv.alive():
                await self.burst(srv, rng)

    # -- lanes per server ----------------------------------------------------------------------

    def lanes(self, srv: Server) -> list:
        name = srv.name
        out = []
        if name in ("tcp-echo-server", "unix-echo-server"):
            for _ in range(2):
                out.append(self.lane(srv, lambda s, r: self.normal(s, self.echo_exchange(s, r, False))))

            async def chaos(s, r):
                kind = r.choice(["reset-mid-write", "never-read", "half-close", "connect-and-leave"])
                body = {"reset-mid-write": lambda: self.reset_mid_write(s, r, False),
                        "never-read": lambda: self.never_read(s, r, False),
                        "half-close": lambda: self.half_close_now(s, r),
                        "connect-and-leave": lambda: self.connect_and_leave(s, r)}[kind]()
                await self.chaos(s, kind, body)
            out.append(self.lane(srv, chaos, gap=0.1))
            for _ in range(self.args.slowloris):
                out.append(self.lane(srv, lambda s, r: self.normal(s, self.slowloris_echo(s, r)), gap=1))
        elif name == "tls-echo-server":
            out.append(self.lane(srv, lambda s, r: self.normal(s, self.echo_exchange(s, r, True))))
            out.append(self.lane(srv, lambda s, r: self.normal(s, self.tls_half_close(s, r))))

            async def chaos(s, r):
                kind = r.choice(["garbage", "mid-handshake", "after-close_notify", "reset-mid-write",
                                 "never-read", "connect-and-leave"])
                body = {"garbage": lambda: self.tls_garbage(s, r),
                        "mid-handshake": lambda: self.tls_mid_handshake(s, r),
                        "after-close_notify": lambda: self.tls_after_close_notify(s, r),
                        "reset-mid-write": lambda: self.reset_mid_write(s, r, True),
                        "never-read": lambda: self.never_read(s, r, True),
                        "connect-and-leave": lambda: self.connect_and_leave(s, r)}[kind]()
                await self.chaos(s, f"tls {kind}", body)
            out.append(self.lane(srv, chaos, gap=0.1))
            out.append(self.lane(srv, chaos, gap=0.1))
            for _ in range(self.args.slowloris):
                out.append(self.lane(srv, lambda s, r: self.normal(s, self.slowloris_tls(s, r)), gap=1))
        elif name == "udp-echo-server":
            for _ in range(2):
                out.append(self.lane(srv, lambda s, r: self.normal(s, self.udp_exchange(s, r))))
            out.append(self.lane(srv, self.udp_chaos, gap=0.2))
        elif name == "chat-server":
            out.append(self.lane(srv, lambda s, r: self.normal(s, self.chat_group(s, r))))
            out.append(self.lane(srv, self.chat_chaos, gap=0.1))

            async def slow(s, r):
                await self.chaos(s, "chat slowloris", self.chat_slowloris(s, r))
            out.append(self.lane(srv, slow, gap=1))

            async def quit_never_read(s, r):   # a lane of its own: each takes --idle-timeout + 5 s
                await self.chaos(s, "chat quit-never-read", self.chat_chaos_one(s, r, "quit-never-read"))
            out.append(self.lane(srv, quit_never_read, gap=1))
        return out

    async def warm_up(self) -> None:
        for srv in self.servers.values():
            rng = self.child_rng()
            for _ in range(3):
                if srv.name == "udp-echo-server":
                    await self.normal(srv, self.udp_exchange(srv, rng))
                elif srv.name == "chat-server":
                    await self.normal(srv, self.chat_group(srv, rng))
                else:
                    await self.normal(srv, self.echo_exchange(srv, rng, srv.name == "tls-echo-server"))
                    if srv.name == "tls-echo-server":
                        await self.normal(srv, self.tls_half_close(srv, rng))

    async def run(self) -> None:
        self.deadline = time.monotonic() + self.args.minutes * 60
        stream = [s for s in self.servers.values() if s.stream]
        every = self.args.burst_every or max(5.0, min(45.0, self.args.minutes * 60 / (len(stream) + 1)))
        tasks = [asyncio.ensure_future(lane) for srv in self.servers.values() for lane in self.lanes(srv)]
        tasks.append(asyncio.ensure_future(self.burst_lane(stream, every)))
        progress = asyncio.ensure_future(self.progress())
        await asyncio.gather(*tasks)
        progress.cancel()
        # After the chaos: each server still serves a normal client.
        for srv in self.servers.values():
            if srv.alive():
                await self.normal(srv, self.exchange_for(srv, self.child_rng()) if srv.stream
                                  else self.udp_exchange(srv, self.child_rng()))

    async def progress(self) -> None:
        """Every minute (a fifth of a run shorter than five minutes), on stderr: "cell n of N
        (elapsed of total min), ~time left" and each server's counts, fds and RSS. The time
        left counts the chaos still to come and the settle time after it."""
        began = time.monotonic()
        total = self.args.minutes * 60
        step = 60.0 if total >= 300 else max(5.0, total / 5)
        cells = max(1, math.ceil(total / step))
        cell = 0
        while True:
            await asyncio.sleep(step)
            cell += 1
            elapsed = time.monotonic() - began
            left = max(0.0, self.deadline - time.monotonic()) + self.args.settle
            parts = []
            for srv in self.servers.values():
                fds, rss = srv.sample()
                st = srv.stats
                parts.append(f"{srv.name.split('-')[0]} ok={st.normal_ok} bad={st.normal_failed + st.checks_failed} "
                             f"fd={fds} rss={mib(rss)}M")
            log(f"cell {min(cell, cells)} of {cells} ({elapsed / 60:.1f} of {self.args.minutes:g} min), "
                f"~{duration_text(left)} left: " + "; ".join(parts))


def duration_text(seconds: float) -> str:
    """42 s, 3 min 5 s."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


class RawTLS:
    """A TLS client over a raw non-blocking socket, driven by hand (ssl.SSLObject over memory
    BIOs), so that it can stop anywhere and send what a real client would not."""

    def __init__(self, soak: Soak, sock: socket.socket):
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = soak.client_ctx.wrap_bio(self.incoming, self.out, server_hostname="localhost")
        self.plaintext = bytearray()

    @classmethod
    async def connect(cls, soak: Soak, srv: Server) -> "RawTLS":
        return cls(soak, await soak.raw_socket(srv))

    async def send(self, data: bytes) -> None:
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def flush(self) -> None:
        await self.send(self.out.read())

    async def receive(self, timeout: float) -> None:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65536), timeout)
        if not data:
            self.incoming.write_eof()
            raise EOFError("the server closed")
        self.incoming.write(data)

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                await self.flush()
                return
            except ssl.SSLWantReadError:
                await self.flush()
                await self.receive(CONNECT_TIMEOUT)

    async def read_exactly(self, n: int, timeout: float) -> bytes:
        got = bytearray()
        while len(got) < n:
            try:
                got += self.obj.read(n - len(got))
            except ssl.SSLWantReadError:
                await self.flush()
                await self.receive(timeout)
        return bytes(got)

    async def read_to_close_notify(self, limit: int) -> bytes:
        """Plaintext until the server's close_notify (EOF without one is an error; what came
        before it is in `plaintext`)."""
        got = self.plaintext = bytearray()
        while True:
            try:
                data = self.obj.read(65536)
            except ssl.SSLWantReadError:
                await self.flush()
                await self.receive(30)
                continue
            except ssl.SSLZeroReturnError:
                return bytes(got)
            if not data:
                return bytes(got)
            got += data
            if len(got) > limit:
                return bytes(got)


# ---------------------------------------------------------------------------------------
# Main


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", required=True, help="where the release builds of the examples are")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the chaos runs (default 10)")
    parser.add_argument("--nofile", type=int, default=256, help="the servers' open-file limit (default 256)")
    parser.add_argument("--loops", type=int, default=2, help="--loops of the echo servers (default 2)")
    parser.add_argument("--slowloris", type=int, default=2, help="slowloris clients per echo server (default 2)")
    parser.add_argument("--burst-every", type=float, default=0.0,
                        help="seconds between fd bursts (default: 45, or less so each stream server gets one)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before the end sample (default 3)")
    parser.add_argument("--no-warm-up-burst", action="store_true",
                        help="take the start sample before any fd burst (glibc's retained heap then counts as growth)")
    parser.add_argument("--trim", action="store_true",
                        help="at the end, also report each server's RSS after malloc_trim(0) (through gdb)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--servers", default="tcp,tls,udp,unix,chat",
                        help="which servers to soak (default tcp,tls,udp,unix,chat)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = int(time.time())
    bin_dir = Path(args.bin_dir)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    tmp = tempfile.mkdtemp(prefix="chaos-soak-")
    sock_path = os.path.join(tmp, "echo.sock")
    loops = ["--loops", str(args.loops)]
    available = {
        "tcp": Server("tcp-echo-server", [str(bin_dir / "tcp-echo-server"), "--port", "0", *loops], args.nofile, True),
        "tls": Server("tls-echo-server", [str(bin_dir / "tls-echo-server"), "--port", "0", *loops,
                                          "--handshake-timeout", str(TLS_HANDSHAKE_TIMEOUT)], args.nofile, True),
        "udp": Server("udp-echo-server", [str(bin_dir / "udp-echo-server"), "--port", "0", *loops], args.nofile, False),
        "unix": Server("unix-echo-server", [str(bin_dir / "unix-echo-server"), "--path", sock_path, *loops],
                       args.nofile, True, path=sock_path),
        "chat": Server("chat-server", [str(bin_dir / "chat-server"), "--port", "0",
                                       "--idle-timeout", str(CHAT_IDLE_TIMEOUT)], args.nofile, True),
    }
    servers = {}
    for key in args.servers.split(","):
        if key not in available:
            parser.error(f"unknown server {key!r}")
        servers[available[key].name] = available[key]

    log(f"chaos soak: {args.minutes:g} min, seed {args.seed}, servers with ulimit -n {args.nofile}, "
        f"echo servers with --loops {args.loops}")
    for srv in servers.values():
        srv.start()
        log(f"{srv.name} pid {srv.pid}: listening on {srv.path or f'{srv.host}:{srv.port}'}")

    stop_sampling = threading.Event()

    def sampler() -> None:
        while not stop_sampling.wait(0.25):
            for srv in servers.values():
                if srv.alive():
                    srv.sample()

    soak = Soak(args, servers)
    threading.Thread(target=sampler, daemon=True).start()
    began = time.monotonic()
    try:
        async def go() -> None:
            await soak.warm_up()
            await asyncio.sleep(1)
            for srv in servers.values():
                srv.fd_fresh, srv.rss_fresh = srv.sample()
            # One fd burst per stream server before "start": the heap grows to what a full fd
            # table of connections needs, and glibc keeps that memory once it is freed (a
            # measured 4 MiB for chat-server; malloc_trim(0) gives it back). Later bursts
            # reuse it; a leak would still grow with every burst and every connection.
            if not args.no_warm_up_burst:
                for srv in servers.values():
                    if srv.stream:
                        await soak.burst(srv, soak.child_rng())
                await asyncio.sleep(1)
            for srv in servers.values():
                srv.udp_drops_start = udp_socket_drops(srv.port) if not srv.stream else 0
                srv.fd_start, srv.rss_start = srv.sample()
                srv.fd_peak, srv.rss_peak = srv.fd_start, srv.rss_start
                srv.sampling = True
            log("warm-up done; start: " + ", ".join(
                f"{s.name} {s.fd_start} fds {mib(s.rss_start)} MiB (before the warm-up burst "
                f"{mib(s.rss_fresh)} MiB)" for s in servers.values()))
            await soak.run()

        asyncio.run(go())
        log(f"chaos over after {(time.monotonic() - began) / 60:.1f} min; settling")
        # The end sample: once the fd counts are back (at most 30 s), then --settle seconds.
        settle_deadline = time.monotonic() + 30
        while time.monotonic() < settle_deadline:
            if all(not s.alive() or s.sample()[0] <= s.fd_start for s in servers.values()):
                break
            time.sleep(0.2)
        cpu_before = {srv.name: cpu_seconds(srv.pid) for srv in servers.values()}
        time.sleep(args.settle)
        for srv in servers.values():
            srv.idle_cpu = (cpu_seconds(srv.pid) - cpu_before[srv.name]) / args.settle
            if srv.alive():
                srv.fd_end, srv.rss_end = srv.sample()
                if not srv.stream:
                    srv.stats.notes["kernel drops at the server's sockets (full receive buffer)"] = (
                        udp_socket_drops(srv.port) - srv.udp_drops_start)
            else:
                srv.crashed = f"died with status {srv.proc.returncode}"
        stop_sampling.set()
        for srv in servers.values():
            # A leak, or memory malloc keeps? (after the end sample, which the checks use)
            if srv.alive() and (args.trim or srv.rss_end > max(srv.rss_start * 1.10, srv.rss_start + 4096)):
                srv.rss_trimmed = trimmed_rss(srv.pid)
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report(args, servers, time.monotonic() - began)


def report(args: argparse.Namespace, servers: dict[str, Server], took: float) -> int:
    failures: list[str] = []
    rows = []
    for srv in servers.values():
        st = srv.stats
        ok = True

        def fail(text: str) -> None:
            nonlocal ok
            ok = False
            failures.append(f"{srv.name}: {text}")

        if srv.crashed:
            fail(srv.crashed)
        if st.normal_failed:
            fail(f"{st.normal_failed} normal clients failed ({st.mismatches} mismatches, {st.losses} losses)")
        if st.checks_failed:
            fail(f"{st.checks_failed} chaos-client checks failed")
        if srv.fd_end != srv.fd_start:
            fail(f"fds {srv.fd_start} at start, {srv.fd_end} at the end")
        rss_limit = max(srv.rss_start * 1.10, srv.rss_start + 4096)
        if srv.rss_end < 0 or srv.rss_end > rss_limit:
            trimmed = (f" ({mib(srv.rss_trimmed)} MiB after malloc_trim(0): "
                       f"{'memory malloc kept, not a leak' if srv.rss_trimmed <= rss_limit else 'still in use'})"
                       if srv.rss_trimmed > 0 else "")
            fail(f"RSS {mib(srv.rss_start)} MiB at start, {mib(srv.rss_end)} MiB at the end{trimmed}")
        if srv.stream and st.chaos["fd burst"] and srv.emfile_warnings == 0:
            fail("the fd bursts never made the server hit its fd limit (no EMFILE back-off logged)")
        if srv.stream and not st.chaos["fd burst"] and args.minutes >= 1:
            fail("no fd burst ran against it")
        if srv.idle_cpu > 0.02:
            fail(f"busy while idle: {srv.idle_cpu:.0%} of a core in the {args.settle:g} s after the chaos")
        unexpected = srv.unexpected_output()
        if unexpected:
            fail(f"{len(unexpected)} unexpected output lines")
        if srv.exit_note:
            fail(srv.exit_note)
        for text in st.problems:
            failures.append(f"{srv.name}:   {text}")
        for line in unexpected[:10]:
            failures.append(f"{srv.name}:   unexpected {line}")
        chaos_total = sum(st.chaos.values())
        rows.append([srv.name, f"{st.normal_ok}/{st.normal_ok + st.normal_failed}", f"{st.bytes_verified:,}",
                     f"{st.mismatches}/{st.losses}", f"{chaos_total:,}", str(srv.emfile_warnings),
                     f"{srv.fd_start} / {srv.fd_peak} / {srv.fd_end}",
                     f"{mib(srv.rss_start)} / {mib(srv.rss_peak)} / {mib(srv.rss_end)}",
                     str(len(unexpected)), "ok" if ok else "FAIL"])
    header = ["server", "normal ok", "bytes verified", "mismatch/loss", "chaos clients", "EMFILE logs",
              "fds start/peak/end", "RSS MiB start/peak/end", "unexpected log", "result"]
    print()
    print(f"Chaos soak: {args.minutes:g} min of chaos ({took / 60:.1f} min in all), seed {args.seed}, "
          f"servers at ulimit -n {args.nofile}, echo servers --loops {args.loops}")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("Chaos clients run:")
    for srv in servers.values():
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(srv.stats.chaos.items()))
        print(f"  {srv.name}: {kinds}")
        trimmed = f"; RSS after malloc_trim(0) {mib(srv.rss_trimmed)} MiB" if srv.rss_trimmed > 0 else ""
        print(f"    before the warm-up fd burst: {srv.fd_fresh} fds, {mib(srv.rss_fresh)} MiB; "
              f"CPU once idle at the end: {srv.idle_cpu:.1%} of a core{trimmed}")
        if srv.stats.notes:
            notes = ", ".join(f"{kind} {count}" for kind, count in sorted(srv.stats.notes.items()))
            print(f"    outcomes: {notes}")
    print("Expected server log lines (not counted): " + "; ".join(f"{why} /{p}/" for p, why in EXPECTED_LOG))
    if failures:
        print()
        print("FAILED:")
        for text in failures:
            print("  " + text)
        return 1
    print()
    print("PASSED: every check held.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
