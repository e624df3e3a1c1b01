"""asyncio's loop.sendfile as a file server, the Python peer of run-sendfile-bench.sh.

    python3 py_sendfile_server.py PORT FILE [--uvloop]

Each connection gets the whole file with `loop.sendfile` (os.sendfile on a plain socket in
asyncio), then is closed. uvloop has no `loop.sendfile` (it raises NotImplementedError), so
with --uvloop the file is copied the way a uvloop user would: 256 KiB `read`, `write`,
`await drain()` (a new bytes object per chunk: the transport may keep a reference to it). Prints "listening on 127.0.0.1:PORT"; exits on SIGTERM.
"""
import asyncio
import signal
import sys


async def main(port, path):
    loop = asyncio.get_running_loop()

    async def serve(reader, writer):
        with open(path, "rb") as f:
            if uvloop_mode:
                while chunk := f.read(256 * 1024):
                    writer.write(chunk)
                    await writer.drain()
            else:
                await loop.sendfile(writer.transport, f)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    await stop


uvloop_mode = "--uvloop" in sys.argv
if uvloop_mode:
    import uvloop
    uvloop.install()
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
