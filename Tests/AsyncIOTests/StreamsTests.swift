//===----------------------------------------------------------------------===//
// swift-asyncio — StreamReader / StreamWriter and the stream servers.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(10)))
struct StreamsTests {
    // readExactly returns exactly n bytes, across feeds; at EOF it throws with the partial bytes.
    @Test func readExactlyAcrossFeedsAndAtEOF() throws {
        try withLoop { loop in
            let (whole, partial, expected) = try loop.runUntilComplete {
                () async throws -> ([UInt8], [UInt8], Int?) in
                let reader = StreamReader(loop: loop)
                loop.callLater(after: .milliseconds(1)) { reader.feed([1, 2]) }
                loop.callLater(after: .milliseconds(2)) { reader.feed([3, 4, 5]) }
                let whole = try await reader.readExactly(4)
                reader.feedEOF()
                do {
                    _ = try await reader.readExactly(3)
                    return (whole, [], nil)
                } catch let error as IncompleteReadError {
                    return (whole, error.partial, error.expected)
                }
            }
            #expect(whole == [1, 2, 3, 4])
            #expect(partial == [5])
            #expect(expected == 3)
        }
    }

    // readUntil finds a separator split across feeds; over the limit it throws and keeps the bytes.
    @Test func readUntilSeparatorAndLimit() throws {
        try withLoop { loop in
            let (line, overrun, rest) = try loop.runUntilComplete {
                () async throws -> ([UInt8], Int?, [UInt8]) in
                let reader = StreamReader(loop: loop, limit: 8)
                reader.feed(Array("ab\r".utf8))
                loop.callLater(after: .milliseconds(1)) { reader.feed(Array("\ncdefghijklmn".utf8)) }
                let line = try await reader.readUntil(Array("\r\n".utf8))
                var consumed: Int?
                do {
                    _ = try await reader.readUntil(Array("\r\n".utf8))
                } catch let error as LimitOverrunError {
                    consumed = error.consumed
                }
                reader.feedEOF()
                let rest = try await reader.read()
                return (line, consumed, rest)
            }
            #expect(line == Array("ab\r\n".utf8))
            #expect(overrun == 12)
            #expect(rest == Array("cdefghijklmn".utf8))   // nothing was lost
        }
    }

    // Cancelling a task blocked in a read throws CancellationError; the reader stays usable.
    @Test func cancellingABlockedReadLeavesTheReaderUsable() throws {
        try withLoop { loop in
            let (cancelled, later) = try loop.runUntilComplete { () async throws -> (Bool, [UInt8]) in
                let reader = StreamReader(loop: loop)
                let reading = Future<Void>(loop: loop)
                let blocked = loop.createTask { () async throws -> [UInt8] in
                    // Our await of `reading` resumes on a later loop pass: by then this task is
                    // suspended in the read below.
                    reading.complete(.success(()))
                    return try await reader.read(max: 10)
                }
                try await waitForEvent(reading, "the reading task starting")
                blocked.cancel()
                var cancelled = false
                do { _ = try await blocked.value } catch is CancellationError { cancelled = true }
                reader.feed([7, 8])
                return (cancelled, try await reader.read(max: 10))
            }
            #expect(cancelled)
            #expect(later == [7, 8])
        }
    }

    // readLine returns lines with their newline, then the partial last line, then [].
    @Test func readLineThenPartialThenEmpty() throws {
        try withLoop { loop in
            let lines = try loop.runUntilComplete { () async throws -> [[UInt8]] in
                let reader = StreamReader(loop: loop)
                reader.feed(Array("one\ntwo\nthr".utf8))
                reader.feedEOF()
                var lines: [[UInt8]] = []
                for _ in 0..<5 { lines.append(try await reader.readLine()) }
                #expect(reader.atEOF)
                return lines
            }
            #expect(lines == [Array("one\n".utf8), Array("two\n".utf8), Array("thr".utf8), [], []])
        }
    }

    // read(max:) returns what is buffered up to max; the reader iterates as chunks until EOF.
    @Test func readMaxAndAsyncSequence() throws {
        try withLoop { loop in
            let (first, chunks) = try loop.runUntilComplete { () async throws -> ([UInt8], [UInt8]) in
                let reader = StreamReader(loop: loop)
                reader.feed([1, 2, 3, 4, 5])
                let first = try await reader.read(max: 2)
                loop.callLater(after: .milliseconds(1)) { reader.feed([6]) }
                loop.callLater(after: .milliseconds(2)) { reader.feedEOF() }
                var all: [UInt8] = []
                for try await chunk in reader { all += chunk }
                return (first, all)
            }
            #expect(first == [1, 2])
            #expect(chunks == [3, 4, 5, 6])
        }
    }

    // An error set on the reader reaches reads once the buffered bytes are consumed.
    @Test func errorAfterBufferedBytes() throws {
        try withLoop { loop in
            let (bytes, failed) = try loop.runUntilComplete { () async throws -> ([UInt8], Bool) in
                let reader = StreamReader(loop: loop)
                reader.feed([9, 9])
                reader.setError(TestError(id: 5))
                let bytes = try await reader.read(max: 10)
                do {
                    _ = try await reader.read(max: 10)
                    return (bytes, false)
                } catch let error as TestError {
                    return (bytes, error == TestError(id: 5))
                }
            }
            #expect(bytes == [9, 9])
            #expect(failed)
        }
    }

    // startServer + openConnection: a line protocol round trip, with drain and writeEOF.
    @Test func streamServerAndClientRoundTrip() throws {
        try withLoop { loop in
            let replies = try loop.runUntilComplete { () async throws -> [String] in
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                    while true {
                        let line = try await reader.readLine()
                        if line.isEmpty { break }
                        writer.write(Array("echo: ".utf8) + line)
                        try await writer.drain()
                    }
                }
                let port = try #require(server.addresses.first?.port)
                let (reader, writer) = try await loop.openConnection(host: "127.0.0.1", port: port)
                writer.writeLines(["a\n", "b", "\n"])   // asyncio's writelines adds nothing
                writer.writeEOF()
                var replies: [String] = []
                for _ in 0..<3 {
                    replies.append(String(decoding: try await reader.readLine(), as: UTF8.self))
                }
                writer.close()   // both sides sent EOF; closing is still ours to do
                try await writer.waitClosed()
                server.close()
                await server.waitClosed()
                return replies
            }
            #expect(replies == ["echo: a\n", "echo: b\n", ""])
        }
    }

    // A reader whose application does not read pauses the transport: the peer's bytes stay
    // in the kernel, and nothing is lost once reading resumes.
    @Test func readerPausesTransportWhenBufferIsFull() throws {
        try withLoop { loop in
            let total = try loop.runUntilComplete { () async throws -> Int in
                let readers = Box<[StreamReader]>([])
                let server = try await loop.startServer(host: "127.0.0.1", port: 0, limit: 1024) { reader, _ in
                    readers.value.append(reader)
                    try await sleep(for: .seconds(30))   // holds the connection, reads nothing
                }
                defer { server.close() }
                let port = try #require(server.addresses.first?.port)
                let (_, writer) = try await loop.openConnection(host: "127.0.0.1", port: port)
                let payload = [UInt8](repeating: 3, count: 1 << 20)
                writer.write(payload)
                // No callback announces the pause: poll, bounded (a reader that never pauses
                // its transport fails here).
                try await waitUntil("the server's reader pausing its transport") {
                    readers.value.first.map { !($0.transport?.isReading ?? true) } ?? false
                }
                let reader = try #require(readers.value.first)
                var total = 0
                while total < payload.count {
                    total += try await reader.read(max: 65536).count
                }
                return total
            }
            #expect(total == 1 << 20)
        }
    }

    // Several tasks may drain at once: all wait while the peer does not read, all return once
    // it does; after the peer resets the connection, drain throws its error.
    @Test func concurrentDrainersAndDrainAfterReset() throws {
        try withLoop { loop in
            let (returned, errorCode) = try loop.runUntilComplete { () async throws -> (Int, TransportError.Code?) in
                let accepted = Future<StreamWriter>(loop: loop)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in
                    accepted.complete(.success(writer))
                    try await sleep(for: .seconds(30))   // holds the connection, reads nothing
                }
                defer { server.close() }
                let port = try #require(server.addresses.first?.port)
                let (clientTransport, client) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol(loop: loop)
                }
                clientTransport.pauseReading()
                let writer = try await waitForEvent(accepted, "the server's connection handler starting")
                Socket.setOption(writer.transport.fileDescriptor, SOL_SOCKET, SO_SNDBUF, 4096)
                writer.write([UInt8](repeating: 5, count: 4 << 20))   // far over the high-water mark
                let returned = Box(0)
                let drainers = (0..<3).map { _ in
                    loop.createTask { try await writer.drain(); returned.value += 1 }
                }
                // Deliberately lets time pass: a drain that returned while the peer does not
                // read would have done so by now.
                try await sleep(for: .milliseconds(20))
                #expect(returned.value == 0)   // all three are waiting
                clientTransport.resumeReading()
                _ = try await waitFor(timeout: .seconds(20)) { try await gather(drainers) }
                // Now a reset: the next drain (over the mark again) fails with it.
                clientTransport.pauseReading()
                writer.write([UInt8](repeating: 6, count: 4 << 20))
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(clientTransport.fileDescriptor, SOL_SOCKET, SO_LINGER, &linger,
                           socklen_t(MemoryLayout<Glibc.linger>.size))
                clientTransport.abort()
                _ = client
                var code: TransportError.Code?
                do {
                    try await waitFor(timeout: .seconds(20)) { try await writer.drain() }
                } catch let error as TransportError {
                    code = error.code
                }
                return (returned.value, code)
            }
            #expect(returned == 3)
            #expect(errorCode == .connectionReset || errorCode == .brokenPipe)
        }
    }
}
