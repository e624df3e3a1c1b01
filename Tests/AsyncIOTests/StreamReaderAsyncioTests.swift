//===----------------------------------------------------------------------===//
// swift-asyncio — StreamReader where asyncio 3.13 defines the behaviour: several
// separators, readline over the limit, iterating lines and chunks (hand-fed, no sockets).
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct StreamReaderAsyncioTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    // readUntil with several separators returns the shortest data ending with any of them
    // (asyncio 3.13's tuple of separators), waiting across feeds.
    @Test func readUntilAnyOfTakesTheEarliestEnd() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let results = try loop.runUntilComplete { () async throws -> [String] in
                reader.feed(Array("a;b\r\nc".utf8))
                var out: [String] = []
                for _ in 0..<2 {
                    let part = try await reader.readUntil(anyOf: [Array("\r\n".utf8), Array(";".utf8)])
                    out.append(String(decoding: part, as: UTF8.self))
                }
                loop.callSoon { reader.feed(Array("d\r".utf8)) }
                loop.callSoon { loop.callSoon { reader.feed(Array("\n".utf8)) } }
                let last = try await reader.readUntil(anyOf: [Array(";".utf8), Array("\r\n".utf8)])
                out.append(String(decoding: last, as: UTF8.self))
                return out
            }
            #expect(results == ["a;", "b\r\n", "cd\r\n"])
        }
    }

    // readline over the limit: LimitOverrunError, and (as asyncio) the long line is dropped
    // through its "\n", so the next readline returns the next line.
    @Test func readLineOverTheLimitDropsTheLongLine() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop, limit: 8)
            let lines = try loop.runUntilComplete { () async throws -> [String] in
                reader.feed(Array("0123456789\nok\n".utf8))
                var out: [String] = []
                do {
                    _ = try await reader.readLine()
                    out.append("no error")
                } catch let error as LimitOverrunError {
                    out.append("overrun \(error.consumed)")
                }
                out.append(String(decoding: try await reader.readLine(), as: UTF8.self))
                // No "\n" within the limit and none yet: everything buffered is dropped.
                reader.feed(Array("abcdefghijkl".utf8))
                do {
                    _ = try await reader.readLine()
                } catch is LimitOverrunError {
                    out.append("overrun")
                }
                reader.feed(Array("x\n".utf8))
                out.append(String(decoding: try await reader.readLine(), as: UTF8.self))
                return out
            }
            #expect(lines == ["overrun 11", "ok\n", "overrun", "x\n"])
        }
    }

    // readUntil over the limit keeps the bytes (asyncio's readuntil: "left in the buffer").
    @Test func readUntilOverTheLimitKeepsTheBytes() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop, limit: 4)
            let rest = try loop.runUntilComplete { () async throws -> [UInt8] in
                reader.feed(Array("abcdef".utf8))
                reader.feedEOF()
                await #expect(throws: LimitOverrunError.self) { _ = try await reader.readUntil(Array(";".utf8)) }
                return try await reader.read()
            }
            #expect(rest == Array("abcdef".utf8))
        }
    }

    // `lines` yields each line with its "\n" and a last partial line; `chunks` yields what
    // arrived; both end at EOF.
    @Test func linesAndChunks() throws {
        try withLoop { loop in
            let lineReader = StreamReader(loop: loop)
            let chunkReader = StreamReader(loop: loop)
            let (lines, chunks) = try loop.runUntilComplete { () async throws -> ([String], [[UInt8]]) in
                lineReader.feed(Array("one\ntwo\nthr".utf8))
                loop.callSoon {
                    lineReader.feed(Array("ee".utf8))
                    lineReader.feedEOF()
                }
                var lines: [String] = []
                for try await line in lineReader.lines {
                    lines.append(String(decoding: line, as: UTF8.self))
                }
                chunkReader.feed([1, 2])
                loop.callSoon {
                    chunkReader.feed([3])
                    chunkReader.feedEOF()
                }
                var chunks: [[UInt8]] = []
                for try await chunk in chunkReader.chunks {
                    chunks.append(chunk)
                }
                return (lines, chunks)
            }
            #expect(lines == ["one\n", "two\n", "three"])
            #expect(chunks == [[1, 2], [3]])
        }
    }
}

@Suite(.timeLimit(.minutes(10)))
struct StreamReaderReadIntoTests {
    // read(into:) fills the caller's buffer with exactly the bytes in order, across feeds and
    // a buffer smaller than what arrived; 0 at EOF; a cancelled read takes nothing.
    @Test func readIntoReusesTheCallersBuffer() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let holder = Box(UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1))
            defer { holder.value.deallocate() }
            let got = try loop.runUntilComplete { () async throws -> [[UInt8]] in
                let buffer = holder.value
                // A read cancelled while waiting loses nothing and duplicates nothing.
                let waiting = loop.createTask { try await reader.read(into: holder.value) }
                loop.callSoon { waiting.cancel() }
                await #expect(throws: CancellationError.self) { _ = try await waiting.value }
                reader.feed(Array("abcdef".utf8))
                var out: [[UInt8]] = []
                loop.callSoon {
                    reader.feed(Array("gh".utf8))
                    reader.feedEOF()
                }
                while true {
                    let n = try await reader.read(into: buffer)
                    if n == 0 { break }
                    out.append(Array(buffer[..<n]))
                }
                return out
            }
            #expect(got == [Array("abcd".utf8), Array("ef".utf8), Array("gh".utf8)])
        }
    }
}
