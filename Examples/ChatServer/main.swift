// chat-server: a line chat, built on the coroutine toolkit.
//
//   $ swift run chat-server --port 7777
//   listening on 127.0.0.1:7777
//
// Try it with `nc 127.0.0.1 7777` in two terminals: the first line is your nick, then every
// line goes to the others; `/who` lists who is online, `/quit` leaves.
//
// Per connection (see `serve`): a Queue holds the lines waiting to be written to the client,
// a task group runs the reader (this task) and the writer (a child task draining the queue),
// and a timeout scope around each readLine closes idle clients. The room (ChatRoom.swift)
// decides what each line means. An Event tells every connection that the server shuts down.
// Everything runs on one event loop: one loop reads every line, so everyone sees messages in
// the order the server read them.

import ArgumentParser
import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// The server's shared state: the room, the live connections, the shutdown event.
final class ChatServerState: @unchecked Sendable {
    // @unchecked Sendable: used on the server's one loop only.
    let room: ChatRoom
    let idleTimeout: Duration
    let shuttingDown = Event()
    var connections: [Int: ChatClient] = [:]
    var nextID = 0

    init(room: ChatRoom, idleTimeout: Duration) {
        self.room = room
        self.idleTimeout = idleTimeout
    }

    /// Serves one connection until the client leaves, idles, misbehaves or the server stops.
    func serve(_ reader: StreamReader, _ writer: StreamWriter) async throws {
        nextID += 1
        let client = ChatClient(id: nextID) { writer.transport.abort() }
        connections[client.id] = client
        defer {
            connections[client.id] = nil
            room.leave(client)
        }
        if shuttingDown.isSet { return }
        // Once the reader is done, what is queued gets as long as a client may stay idle to
        // be read; a client that does not read it by then is dropped.
        var flushDeadline: Handle?
        defer { flushDeadline?.cancel() }
        try await withLoopTaskGroup { group in
            // The writer: the client's queued lines, in order, waiting whenever the socket's
            // buffer is full; it ends when the queue is shut down and empty.
            try group.createTask(name: "chat writer \(client.id)") {
                do {
                    for try await line in client.outbox {
                        writer.write(line)
                        try await writer.drain()
                    }
                } catch {
                    // The connection is gone: nothing more to write.
                }
                writer.close()
            }
            await readLines(reader, client)
            room.leave(client)
            client.outbox.shutdown()   // the writer flushes what is queued, then closes
            flushDeadline = reader.loop.callLater(after: idleTimeout) { writer.transport.abort() }
        }
        // The writer has closed the connection, but the close waits for the client to read
        // what the transport still buffers: the deadline stays armed until the connection is
        // really closed (a client that never reads would keep it, and its fd, forever).
        try? await writer.waitClosed()
    }

    /// Reads and handles the client's lines until it leaves or must be closed.
    private func readLines(_ reader: StreamReader, _ client: ChatClient) async {
        while !shuttingDown.isSet {
            let line: [UInt8]
            do {
                line = try await timeout(after: idleTimeout) { _ in try await reader.readLine() }
            } catch is TimeoutError {
                client.send("* idle timeout\n")
                return
            } catch is LimitOverrunError {
                client.send("* line too long\n")
                return
            } catch {
                return   // reset, or the connection was aborted
            }
            switch ChatRoom.frame(line) {
            case .incomplete:
                return   // end of stream: a last line without "\n" is not a complete line
            case .tooLong:
                client.send("* line too long\n")
                return
            case .text(let text):
                if shuttingDown.isSet { return }
                if room.handle(text, from: client) == .leave { return }
            }
        }
    }

    /// Stops the chat: joined clients get a last line, every connection closes.
    func shutDown() {
        shuttingDown.set()
        room.shutDown(Array(connections.values))
    }
}

struct ChatServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-server",
        abstract: "A line chat over TCP, built on the coroutine toolkit.")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free one).")
    var port = 7777

    @Option(help: "Seconds without a complete line before a client is closed.")
    var idleTimeout: Double = 300

    @Option(help: "Lines that may wait for a client that does not read, before it is dropped.")
    var maxQueue = 100

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535, got \(port)") }
        guard idleTimeout > 0, idleTimeout.isFinite, idleTimeout <= 1e9 else {
            throw ValidationError("--idle-timeout must be a positive number of seconds, got \(idleTimeout)")
        }
        guard maxQueue >= 1 else { throw ValidationError("--max-queue must be at least 1, got \(maxQueue)") }
    }

    func run() throws {
        let (host, port, maxQueue) = (host, port, maxQueue)
        let idle = Duration.milliseconds(Int64((idleTimeout * 1000).rounded(.up)))
        do {
            try EventLoop.run { loop in
                let state = ChatServerState(room: ChatRoom(maxQueue: maxQueue), idleTimeout: idle)
                // The reader's limit counts the "\n" and a "\r" before it: 4,096 bytes of text
                // pass with either ending; readLines refuses what is longer without the "\r".
                let server = try await loop.startServer(host: host, port: port, limit: ChatRoom.maxLineBytes + 2) {
                    reader, writer in
                    try await state.serve(reader, writer)
                }
                say("listening on \(server.addresses[0])")

                let signal = try await loop.waitForSignal([SIGINT, SIGTERM])
                log("signal \(signal): closing")
                server.close()
                state.shutDown()
                do {
                    try await waitFor(timeout: .milliseconds(1500)) { await server.waitClosed() }
                } catch {
                    server.abortClients()   // clients that do not read their last line
                }
            }
        } catch {
            log("chat-server: error: \(error)")
            throw ExitCode.failure
        }
    }
}

/// Prints a line to stdout and flushes it (the "listening on" line must reach a pipe at once).
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// Writes a line to stderr.
func log(_ line: String) {
    _ = (line + "\n").withCString { write(2, $0, strlen($0)) }
}

ChatServer.main()
