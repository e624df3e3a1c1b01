//===----------------------------------------------------------------------===//
// swift-asyncio — Pipe transports.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif
import CAsyncIOLinux

/// pipe(2) with both ends close-on-exec. The tests wait for EOF or EPIPE, which never come
/// while a child process that another test spawns at the same moment (an exit test) holds an
/// inherited copy of an end.
private func makePipe(_ ends: inout [Int32]) -> Int32 {
    casyncio_pipe2(&ends, O_CLOEXEC)
}

@Suite(.timeLimit(.minutes(10)))
struct PipeTransportTests {
    // A read pipe delivers the bytes, then eofReceived and connectionLost(nil) when the
    // writing end closes.
    @Test func readPipeDeliversBytesThenEOFThenLost() throws {
        try withLoop { loop in
            let (events, received, error) = try loop.runUntilComplete { () async throws -> ([String], [UInt8], (any Error)?) in
                var ends: [Int32] = [0, 0]
                #expect(makePipe(&ends) == 0)
                let (_, proto) = try await loop.connectReadPipe(ends[0]) { RecordingProtocol(loop: loop) }
                var bytes: [UInt8] = Array("through a pipe".utf8)
                #expect(write(ends[1], &bytes, bytes.count) == bytes.count)
                close(ends[1])
                try await waitFor(proto.lost, timeout: .seconds(10))
                return (proto.events, proto.received, proto.lostError)
            }
            #expect(events == ["made", "data", "eof", "lost"])
            #expect(received == Array("through a pipe".utf8))
            #expect(error == nil)
        }
    }

    // A write pipe whose reader went away while data was pending reports brokenPipe.
    @Test func writePipeReportsAClosedReader() throws {
        try withLoop { loop in
            let code = try loop.runUntilComplete { () async throws -> TransportError.Code? in
                var ends: [Int32] = [0, 0]
                #expect(makePipe(&ends) == 0)
                let (transport, proto) = try await loop.connectWritePipe(ends[1]) { RecordingProtocol(loop: loop) }
                transport.write([UInt8](repeating: 1, count: 1 << 20))   // more than the pipe holds
                #expect(transport.writeBufferSize > 0)
                close(ends[0])
                try await waitFor(proto.lost, timeout: .seconds(10))
                return (proto.lostError as? TransportError)?.code
            }
            #expect(code == .brokenPipe)
        }
    }

    // writeEOF on a write pipe flushes everything, then closes it: the reader sees all bytes
    // and EOF.
    @Test func writePipeFlushesThenClosesOnWriteEOF() throws {
        try withLoop { loop in
            let (count, lostError) = try loop.runUntilComplete { () async throws -> (Int, (any Error)?) in
                var ends: [Int32] = [0, 0]
                #expect(makePipe(&ends) == 0)
                let (transport, writer) = try await loop.connectWritePipe(ends[1]) { RecordingProtocol(loop: loop) }
                let (_, reader) = try await loop.connectReadPipe(ends[0]) { RecordingProtocol(loop: loop) }
                transport.write([UInt8](repeating: 2, count: 3 << 20))
                transport.writeEOF()
                try await waitFor(reader.lost, timeout: .seconds(10))
                try await waitFor(writer.lost, timeout: .seconds(10))
                return (reader.received.count, writer.lostError)
            }
            #expect(count == 3 << 20)
            #expect(lostError == nil)
        }
    }

    // A regular file cannot be watched: a clear notPollable error, nothing else happens.
    @Test func regularFileIsNotPollable() throws {
        try withLoop { loop in
            let code = try loop.runUntilComplete { () async throws -> TransportError.Code? in
                let fd = open("/proc/self/exe", O_RDONLY)
                defer { close(fd) }
                #expect(!EventLoop.canWatch(fd))
                do {
                    _ = try await loop.connectReadPipe(fd) { RecordingProtocol(loop: loop) }
                    return nil
                } catch let error as TransportError {
                    return error.code
                }
            }
            #expect(code == .notPollable)
            var ends: [Int32] = [0, 0]
            #expect(makePipe(&ends) == 0)
            #expect(EventLoop.canWatch(ends[0]) && EventLoop.canWatch(ends[1]))
            close(ends[0])
            close(ends[1])
        }
    }
}
