//===----------------------------------------------------------------------===//
// swift-asyncio — the streams fast paths keep asyncio's semantics: bytes copied straight into
// a waiting read(into:), one cancellation handler per connection task (the cover), and a
// reader that holds its transport only while the connection lives.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct StreamsFastPathTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    // A waiting read(into:) gets the bytes straight into its memory; what does not fit is
    // buffered behind them, in order; bytes arriving while no read waits never touch the
    // memory of the read before.
    @Test func directDeliveryKeepsOrderAndNeverWritesAnotherReadsMemory() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let first = Box(UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1))
            let second = Box(UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 1))
            defer {
                first.value.deallocate()
                second.value.deallocate()
            }
            let got = try loop.runUntilComplete { () async throws -> [[UInt8]] in
                loop.callSoon { reader.feed(Array("abcdefgh".utf8)) }
                let a = try await reader.read(into: first.value)   // waits: "abcd" delivered
                let afterFirst = Array(first.value[..<a])
                reader.feed(Array("XY".utf8))                      // no read waits: buffered
                let b = try await reader.read(into: second.value)  // buffered: "efghXY"
                let afterSecond = Array(second.value[..<b])
                loop.callSoon {
                    reader.feed(Array("12".utf8))
                    reader.feedEOF()
                }
                let c = try await reader.read(into: second.value)  // waits: "12"
                let d = try await reader.read(into: second.value)  // EOF
                return [afterFirst, afterSecond, Array(second.value[..<c]), [UInt8(d)],
                        Array(first.value)]
            }
            #expect(got == [bytes("abcd"), bytes("efghXY"), bytes("12"), [0], bytes("abcd")])
        }
    }

    // The transport's side (StreamReaderProtocol is a BufferedProtocol): a waiting
    // read(into:) lends its own memory, so the kernel's copy is the only one; with no read
    // waiting, or once a waiting read was cancelled, the transport gets the loop's scratch
    // buffer and the bytes are buffered in order, never written into a read's memory.
    @Test func transportReadsStraightIntoAWaitingReadsMemory() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let memory = Box(UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 1))
            defer { memory.value.deallocate() }
            /// Plays the transport: asks for a buffer, puts `text` (at most what fits) there.
            func arrive(_ text: String) -> UnsafeMutableRawBufferPointer {
                let buffer = reader.receiveBuffer()
                let bytes = Array(text.utf8).prefix(buffer.count)
                buffer.copyBytes(from: bytes)
                reader.received(bytes.count)
                return buffer
            }
            let (lent, read, scratch, buffered, untouched, cancelled, afterCancel) = try loop.runUntilComplete {
                () async throws -> (Bool, String, Bool, String, String, Bool, String) in
                // A read waits: the transport reads into its memory, only as much as fits.
                let waiting = loop.createTask { try await reader.read(into: memory.value) }
                try await waitUntil("the read waits") { reader.isWaiting }
                let lent = arrive("abcdefgh").baseAddress == memory.value.baseAddress
                let count = try await waiting.value
                let read = String(decoding: memory.value[..<count], as: UTF8.self)
                // No read waits: the scratch buffer; the bytes wait in the reader.
                let scratch = arrive("XY").baseAddress != memory.value.baseAddress
                let untouched = String(decoding: memory.value[..<4], as: UTF8.self)
                let other = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 1)
                defer { other.deallocate() }
                let n = try await reader.read(into: other)
                let buffered = String(decoding: other[..<n], as: UTF8.self)
                // A waiting read cancelled before the bytes: they are not put in its memory.
                let second = loop.createTask { try await reader.read(into: memory.value) }
                try await waitUntil("the second read waits") { reader.isWaiting }
                second.cancel()
                var cancelled = false
                do { _ = try await second.value } catch is CancellationError { cancelled = true }
                let afterCancel = arrive("zz").baseAddress == memory.value.baseAddress
                    ? "lent" : String(decoding: try await reader.read(max: 10), as: UTF8.self)
                return (lent, read, scratch, buffered, untouched, cancelled, afterCancel)
            }
            #expect(lent && read == "abcd")
            #expect(scratch && buffered == "XY" && untouched == "abcd")
            #expect(cancelled && afterCancel == "zz")
        }
    }

    // Bytes and a cancellation reaching a waiting read(into:) in the same loop pass: whichever
    // comes first wins, and nothing is lost or delivered twice. Without a cover (a task of its
    // own) and with one (a stream server's connection task).
    @Test(arguments: [false, true])
    func cancellationRacingBytesLosesNothing(covered: Bool) throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let memory = Box(UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1))
            defer { memory.value.deallocate() }
            let outcome = try loop.runUntilComplete { () async throws -> [String] in
                func waitingRead() -> LoopTask<Int> {
                    loop.createTask {
                        if covered {
                            var count = 0
                            try await reader.coverCancellation { count = try await reader.read(into: memory.value) }
                            return count
                        }
                        return try await reader.read(into: memory.value)
                    }
                }
                var outcome: [String] = []
                // Bytes first, then the cancellation: the read returns the bytes.
                let first = waitingRead()
                try await waitUntil("the first read waits") { reader.isWaiting }
                reader.feed(Array("one".utf8))
                first.cancel()
                let count = try await first.value
                outcome.append(String(decoding: memory.value[..<count], as: UTF8.self))
                // The cancellation first, then bytes: the read throws, the bytes stay buffered.
                let second = waitingRead()
                try await waitUntil("the second read waits") { reader.isWaiting }
                second.cancel()
                reader.feed(Array("two".utf8))
                reader.feedEOF()
                do {
                    _ = try await second.value
                    outcome.append("no error")
                } catch is CancellationError {
                    outcome.append("cancelled")
                }
                let left = try await reader.read(max: 100)
                outcome.append(String(decoding: left, as: UTF8.self))
                return outcome
            }
            #expect(outcome == ["one", "cancelled", "two"])
        }
    }

    // A waiting read(max:) gets its array made straight from the received bytes, at most
    // `max` of them, the rest buffered in order; a cancellation that reaches it before the
    // bytes leaves them all to the next read.
    @Test func readMaxWaitingGetsTheBytesInOrderAndCancellationLosesNothing() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let got = try loop.runUntilComplete { () async throws -> [String] in
                var got: [String] = []
                loop.callSoon { reader.feed(Array("abcdefgh".utf8)) }
                got.append(String(decoding: try await reader.read(max: 3), as: UTF8.self))   // waits
                got.append(String(decoding: try await reader.read(max: 100), as: UTF8.self)) // buffered
                let waiting = loop.createTask { try await reader.read(max: 100) }
                try await sleep(for: .milliseconds(1))
                waiting.cancel()
                reader.feed(Array("ij".utf8))
                reader.feedEOF()
                do {
                    _ = try await waiting.value
                    got.append("no error")
                } catch is CancellationError {
                    got.append("cancelled")
                }
                got.append(String(decoding: try await reader.read(max: 100), as: UTF8.self))
                got.append(String(decoding: try await reader.read(max: 100), as: UTF8.self))  // EOF
                return got
            }
            #expect(got == ["abc", "defgh", "cancelled", "ij", ""])
        }
    }

    // A read(into:) cancelled and not yet running, and a read of another task waiting
    // meanwhile: the next bytes go to the waiting read, not to the cancelled read's memory.
    @Test func bytesAfterACancelledReadGoToTheReadThatWaits() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let memory = Box(UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1))
            defer { memory.value.deallocate() }
            let got = try loop.runUntilComplete { () async throws -> [String] in
                let first = loop.createTask { try await reader.read(into: memory.value) }
                try await waitUntil("the first read waits") { reader.isWaiting }
                first.cancel()   // on the loop: resumed with CancellationError, not yet run
                // Eager: waits before the first read's task runs again.
                let second = loop.createTask(eager: true) { try await reader.read(max: 100) }
                #expect(reader.isWaiting)
                reader.feed(Array("xy".utf8))
                reader.feedEOF()
                var got: [String] = []
                do {
                    _ = try await first.value
                    got.append("first read")
                } catch is CancellationError {
                    got.append("first cancelled")
                }
                got.append(String(decoding: try await second.value, as: UTF8.self))
                return got
            }
            #expect(got == ["first cancelled", "xy"])
        }
    }

    // Inside a cover, the covered task's waits are woken by its one handler, also when the
    // task is cancelled from another thread; a child task reading from the same reader keeps
    // a handler of its own, and cancelling the child leaves the covered task's reads alone.
    @Test func coverWakesItsTaskAndLeavesOtherTasksAlone() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let seen = Box<[String]>([])
            try loop.runUntilComplete { () async throws in
                let covered = Task(executorPreference: loop.taskExecutor) {
                    try await reader.coverCancellation {
                        // A child reads (no cover of its own); cancelling it ends only it.
                        let child = loop.createTask { try await reader.read(max: 10) }
                        try await waitUntil("the child's read waits") { reader.isWaiting }
                        child.cancel()
                        do {
                            _ = try await child.value
                            seen.value.append("child read")
                        } catch is CancellationError {
                            seen.value.append("child cancelled")
                        }
                        loop.callSoon { reader.feed(Array("data".utf8)) }
                        seen.value.append(String(decoding: try await reader.read(max: 10), as: UTF8.self))
                        do {
                            _ = try await reader.read(max: 10)   // cancelled from another thread
                            seen.value.append("read")
                        } catch is CancellationError {
                            seen.value.append("cancelled")
                        }
                    }
                }
                try await waitUntil("the covered task waits again") { seen.value.count == 2 && reader.isWaiting }
                let canceller = OSThread.spawn(name: "canceller") { covered.cancel() }
                try await covered.value
                canceller.join()
            }
            #expect(seen.value == ["child cancelled", "data", "cancelled"])
        }
    }

    // The covered task's waits take the cover's path (no handler of their own): the task is
    // recognised by its continuation. A child's wait is not the cover's. If the runtime ever
    // stopped handing out the task as the continuation, every wait would take the slower
    // handler path; this test is what notices.
    @Test func coveredTaskIsRecognisedByItsContinuation() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let seen = Box<[String]>([])
            try loop.runUntilComplete { () async throws in
                let covered = loop.createTask {
                    try await reader.coverCancellation {
                        let child = loop.createTask { try await reader.read(max: 10) }
                        try await waitUntil("the child's read waits") { reader.isWaiting }
                        seen.value.append(reader.isWaitCovered ? "child covered" : "child uncovered")
                        reader.feed(Array("a".utf8))
                        seen.value.append(String(decoding: try await child.value, as: UTF8.self))
                        seen.value.append(String(decoding: try await reader.read(max: 10), as: UTF8.self))
                    }
                }
                try await waitUntil("the covered task's read waits") { seen.value.count == 2 && reader.isWaiting }
                seen.value.append(reader.isWaitCovered ? "covered" : "uncovered")
                reader.feed(Array("b".utf8))
                try await covered.value
            }
            #expect(seen.value == ["child uncovered", "a", "covered", "b"])
        }
    }

    // A read in a loop task outside any stream server's cover (a client, say) is covered by
    // the task: no handler of its own, and the task's cancel(message:) ends it with
    // CancellationError and nothing read; bytes fed afterwards wait for the next read.
    @Test func aLoopTasksReadOutsideAServerIsCoveredByTheTask() throws {
        try withLoop { loop in
            let reader = StreamReader(loop: loop)
            let seen = Box<[String]>([])
            try loop.runUntilComplete { () async throws in
                let client = loop.createTask { () async throws -> Void in
                    do {
                        _ = try await reader.read(max: 10)
                        seen.value.append("read")
                    } catch is CancellationError {
                        seen.value.append("cancelled")
                    }
                }
                try await waitUntil("the client's read waits") { reader.isWaiting && client.hasCoveredWait }
                client.cancel()
                try await waitUntil("the cancelled read ends") { client.isDone }
                reader.feed(Array("xy".utf8))
                seen.value.append(String(decoding: try await reader.read(max: 10), as: UTF8.self))
            }
            #expect(seen.value == ["cancelled", "xy"])
        }
    }

    // The reader holds its transport strongly while the connection lives (a weak reference
    // would slow every retain of it); once the connection is lost nothing keeps the
    // transport, the reader or the writer alive (no cycle through the reader, the protocol
    // or the connection task).
    @Test func closedConnectionFreesTransportReaderAndWriter() throws {
        final class Weak: @unchecked Sendable {
            weak var transport: AnyObject?
            weak var reader: StreamReader?
            weak var writer: StreamWriter?
        }
        try withLoop { loop in
            let refs = Weak()
            try loop.runUntilComplete { () async throws in
                let handled = Future<Void>(loop: loop)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { reader, writer in
                    refs.transport = writer.transport as AnyObject
                    refs.reader = reader
                    refs.writer = writer
                    while try await !reader.read(max: 100).isEmpty {}
                    if !handled.isDone { handled.complete(.success(())) }
                }
                let port = try #require(server.addresses.first?.port)
                let (_, clientWriter) = try await loop.openConnection(host: "127.0.0.1", port: port)
                clientWriter.write("x")
                clientWriter.close()
                try await waitForEvent(handled, "the handler saw EOF")
                try await waitUntil("the connection's objects are freed") {
                    refs.transport == nil && refs.reader == nil && refs.writer == nil
                }
                server.close()
            }
        }
    }
}
