#!/usr/bin/env python3
"""Echo server on asyncio's default loop or on uvloop, with the Protocol API or with streams.

    py_echo_server.py [--loop asyncio|uvloop] [--api protocol|streams] [--host H] [--port P]
                      [--unix PATH]
    py_echo_server.py --udp [--loop asyncio|uvloop] [--host H] [--port P]
    py_echo_server.py --tls [--cert PEM] [--key PEM] [--loop asyncio|uvloop]
                      [--api protocol|streams] [--host H] [--port P]

Prints `listening on HOST:PORT` (or `listening on unix:PATH`) on stdout, flushed, once it
listens (--port 0 picks an ephemeral port), echoes every byte, and exits 0 on SIGTERM or
SIGINT (closing the server first), so LD_PRELOAD destructors and valgrind tools see a
normal exit.

The protocol server is the classic `transport.write(data)` in `data_received`, with
`pause_reading` while the transport's write buffer is above its high-water mark (flow
control, as the C and SwiftNIO servers do). The streams server is `data = await
reader.read(65536); writer.write(data); await writer.drain()`.

With --udp it is a UDP echo server instead: a DatagramProtocol whose `datagram_received`
does `transport.sendto(data, addr)` (--api is ignored: UDP has no streams).

With --tls the TCP server speaks TLS (the loop's own TLS layer: asyncio's SSLProtocol, or
uvloop's, both over the ssl module's OpenSSL): an SSLContext for clients
(`ssl.create_default_context(Purpose.CLIENT_AUTH)`: TLS 1.2 and 1.3, OpenSSL's default
session tickets) with --cert and --key (default Certificates/server.crt and .key); the
client picks the cipher suite. On the client's close_notify the protocol's `eof_received`
returns None, so the transport answers it and closes.
"""

import argparse
import asyncio
import os
import signal
import socket
import ssl
import sys


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)

    # The transport calls these when its write buffer crosses the high/low water marks.
    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def connection_lost(self, exc):
        self.transport = None


async def echo_stream(reader, writer):
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        pass  # an ICMP error for an earlier datagram: keep serving


async def serve(args):
    loop = asyncio.get_running_loop()
    tls = None
    if args.tls:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    if args.udp:
        transport, _ = await loop.create_datagram_endpoint(
            EchoDatagramProtocol, local_addr=(args.host, args.port))
        port = transport.get_extra_info("sockname")[1]
        print(f"listening on {args.host}:{port}", flush=True)
        server = transport  # closed below, like a server
    elif args.unix:
        try:
            os.unlink(args.unix)
        except FileNotFoundError:
            pass
        if args.api == "protocol":
            server = await loop.create_unix_server(EchoProtocol, args.unix, backlog=4096)
        else:
            server = await asyncio.start_unix_server(echo_stream, args.unix, backlog=4096)
        print(f"listening on unix:{args.unix}", flush=True)
    else:
        if args.api == "protocol":
            server = await loop.create_server(
                EchoProtocol, args.host, args.port, backlog=4096, ssl=tls)
        else:
            server = await asyncio.start_server(
                echo_stream, args.host, args.port, backlog=4096, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {args.host}:{port}", flush=True)

    stopped = loop.create_future()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, lambda: stopped.done() or stopped.set_result(None))
    await stopped
    server.close()
    if args.unix:
        try:
            os.unlink(args.unix)
        except FileNotFoundError:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--api", choices=["protocol", "streams"], default="protocol")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unix")
    parser.add_argument("--udp", action="store_true")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--cert", default="Certificates/server.crt")
    parser.add_argument("--key", default="Certificates/server.key")
    args = parser.parse_args()
    if args.tls and (args.udp or args.unix):
        parser.error("--tls is for TCP servers (not with --udp or --unix)")
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    runner(serve(args))


if __name__ == "__main__":
    sys.exit(main())
