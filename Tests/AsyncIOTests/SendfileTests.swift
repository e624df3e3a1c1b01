//===----------------------------------------------------------------------===//
// swift-asyncio — loop.sendfile: sendfile(2) on sockets and pipes, the read-and-write fallback
// on TLS, against Python's socket and ssl modules and the kernel's own readers.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// A temporary file holding some bytes, open for reading; ``remove()`` closes and deletes it.
private struct TempFile {
    let fd: Int32
    let path: String

    init(_ bytes: [UInt8]) throws {
        var template = Array("/tmp/asyncio-sendfile-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw TransportError(errno: errno, syscall: "mkstemp") }
        self.fd = fd
        self.path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            guard n > 0 else { throw TransportError(errno: errno, syscall: "write") }
            written += n
        }
        lseek(fd, 0, SEEK_SET)
    }

    /// The file's position (where `read` would go on).
    var position: Int { Int(lseek(fd, 0, SEEK_CUR)) }

    func remove() {
        close(fd)
        unlink(path)
    }
}

/// Records what the transport tells its protocol.
private final class FileSendRecorder: StreamProtocol, @unchecked Sendable {
    var transport: (any StreamTransport)?
    var lostError: (any Error)?
    var lost = 0
    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }
    func dataReceived(_ bytes: UnsafeRawBufferPointer) {}
    func eofReceived() -> Bool { true }
    func connectionLost(_ error: (any Error)?) {
        lost += 1
        lostError = error
    }
}

/// Reads `fd` (blocking) to its end on a thread of its own, then closes it; the future
/// completes on `loop` with every byte read.
private func readToEnd(_ fd: Int32, on loop: EventLoop) -> Future<[UInt8]> {
    let future = Future<[UInt8]>(loop: loop)
    _ = OSThread.spawn(name: "reader", detached: true) {
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            all += chunk[0..<n]
        }
        close(fd)
        let received = all
        _ = try? loop.callSoonThreadSafe { future.completeIfPending(.success(received)) }
    }
    return future
}

/// A pipe whose ends are close-on-exec (a child started by another test must not keep the
/// writing end open). Not the shim's pipe2: importing CAsyncIOLinux beside Glibc in a test
/// file hides Glibc's socket constants from other files compiled in the same batch.
private func closeOnExecPipe() throws -> [Int32] {
    var ends: [Int32] = [-1, -1]
    guard pipe(&ends) == 0 else { throw TransportError(errno: errno, syscall: "pipe") }
    for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return ends
}

/// A connected pair of blocking Unix stream sockets: [ours, the peer's].
private func unixPair() throws -> [Int32] {
    var pair: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
        throw TransportError(errno: errno, syscall: "socketpair")
    }
    return pair
}

/// The bytes of the file at `path`.
private func contents(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw TransportError(errno: errno, syscall: "open") }
    defer { close(fd) }
    var all: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return all }
        all += chunk[0..<n]
    }
}

/// Where `received` first differs from `expected` (its length if one is a prefix of the
/// other), nil if they are equal: a failure names an index, not megabytes of bytes.
private func firstDifference(_ received: [UInt8], _ expected: [UInt8]) -> Int? {
    if let index = (0..<min(received.count, expected.count)).first(where: { received[$0] != expected[$0] }) { return index }
    return received.count == expected.count ? nil : min(received.count, expected.count)
}

/// Reads from a TCP (or, with `sys.argv[3]`, TLS) server to the end and saves what came.
private let pythonSaveAll = """
    import socket, ssl, sys
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    if len(sys.argv) > 3:
        s = ssl.create_default_context(cafile=sys.argv[3]).wrap_socket(s, server_hostname="localhost")
    with open(sys.argv[2], "wb") as out:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            out.write(b)
    print("ok")
    """

@Suite(.timeLimit(.minutes(10)))
struct SendfileTests {
    // Over TCP to Python: the bytes written before go first, then exactly the file's segment,
    // then what is written after; the call returns the segment's length and leaves the file's
    // position after it (asyncio's behaviour).
    @Test func tcpSegmentGoesBetweenEarlierAndLaterWrites() throws {
        let file = try TempFile(pattern(5_000_000))
        defer { file.remove() }
        let head = pattern(3 << 20).map { $0 ^ 0x5a }
        let output = file.path + ".received"
        defer { unlink(output) }
        try withLoop { loop in
            let (sent, position, code) = try loop.runUntilComplete { () async throws -> (Int, Int, Int32) in
                let result = Future<(Int, Int)>(loop: loop)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0) { _, writer in
                    do {
                        writer.write(head)
                        let sent = try await writer.sendfile(file: file.fd, offset: 1234, count: 4_000_000)
                        writer.write("TAIL")
                        result.completeIfPending(.success((sent, file.position)))
                    } catch {
                        result.completeIfPending(.failure(error))
                    }
                }
                defer { server.close() }
                let python = try await startPython(loop, pythonSaveAll, ["\(server.addresses[0].port ?? 0)", output])
                let (sent, position) = try await result.value
                let (code, _) = try await finishPython(python)
                return (sent, position, code)
            }
            #expect(code == 0)
            #expect(sent == 4_000_000)
            #expect(position == 1234 + 4_000_000)
        }
        let expected = head + pattern(5_000_000)[1234..<(1234 + 4_000_000)] + Array("TAIL".utf8)
        let received = try contents(output)
        #expect(received.count == expected.count)
        #expect(firstDifference(received, expected) == nil)
    }

    // A reader that takes nothing yet: the send waits for writability while the loop goes on
    // (a timer fires; bytes written meanwhile are held, counted in the write buffer); once
    // the reader reads, the whole file arrives, then the held bytes.
    @Test func slowReaderLeavesTheLoopRunningAndHeldBytesFollowTheFile() throws {
        let bytes = pattern(8 << 20)
        let file = try TempFile(bytes)
        defer { file.remove() }
        try withLoop { loop in
            let (sent, pendingAfterTimer, heldSize, received) = try loop.runUntilComplete {
                () async throws -> (Int, Bool, Int, [UInt8]) in
                let pair = try unixPair()
                let (transport, _) = try await loop.connectAcceptedSocket(sock: pair[0]) { FileSendRecorder() }
                nonisolated(unsafe) let target = transport   // loop-bound; the task runs on the loop
                let sending = loop.createTask { try await loop.sendfile(target, file: file.fd) }
                try await loop.sleep(for: .milliseconds(20))
                let pendingAfterTimer = !sending.isDone   // 8 MiB do not fit in the socket buffers
                transport.write("AFTER")
                let heldSize = transport.writeBufferSize
                let reading = readToEnd(pair[1], on: loop)
                let sent = try await sending.value
                transport.close()
                return (sent, pendingAfterTimer, heldSize, try await reading.value)
            }
            #expect(pendingAfterTimer)
            #expect(heldSize == 5)
            #expect(sent == bytes.count)
            #expect(received.count == bytes.count + 5)
            #expect(firstDifference(received, bytes + Array("AFTER".utf8)) == nil)
        }
    }

    // A segment running past the end of the file sends what is there; at the end, nothing.
    @Test func segmentPastTheEndSendsWhatTheFileHas() throws {
        let bytes = pattern(1000)
        let file = try TempFile(bytes)
        defer { file.remove() }
        try withLoop { loop in
            let (first, second, position, received) = try loop.runUntilComplete {
                () async throws -> (Int, Int, Int, [UInt8]) in
                let pair = try unixPair()
                let (transport, _) = try await loop.connectAcceptedSocket(sock: pair[0]) { FileSendRecorder() }
                let reading = readToEnd(pair[1], on: loop)
                let first = try await loop.sendfile(transport, file: file.fd, offset: 900, count: 500)
                let second = try await loop.sendfile(transport, file: file.fd, offset: 1000)
                let position = file.position
                transport.close()
                return (first, second, position, try await reading.value)
            }
            #expect(first == 100)
            #expect(second == 0)
            #expect(position == 1000)
            #expect(received == Array(bytes[900...]))
        }
    }

    // Bad arguments and states are typed errors that name the problem; nothing is sent.
    @Test func badArgumentsAndStatesAreTypedErrors() throws {
        let file = try TempFile(pattern(100))
        defer { file.remove() }
        try withLoop { loop in
            let (errors, received) = try loop.runUntilComplete { () async throws -> ([TransportError?], [UInt8]) in
                let pair = try unixPair()
                let (transport, _) = try await loop.connectAcceptedSocket(sock: pair[0]) { FileSendRecorder() }
                let reading = readToEnd(pair[1], on: loop)
                let pipeEnds = try closeOnExecPipe()
                defer { close(pipeEnds[0]); close(pipeEnds[1]) }
                var errors: [TransportError?] = []
                func attempt(_ body: () async throws -> Int) async {
                    do {
                        _ = try await body()
                        errors.append(nil)
                    } catch {
                        errors.append(error as? TransportError)
                    }
                }
                await attempt { try await loop.sendfile(transport, file: file.fd, offset: -1) }
                await attempt { try await loop.sendfile(transport, file: file.fd, count: 0) }
                await attempt { try await loop.sendfile(transport, file: -1) }
                await attempt { try await loop.sendfile(transport, file: pipeEnds[0], fallback: false) }
                // The fallback reads with pread, which a pipe refuses (ESPIPE); the protocol is
                // handed back and the transport still works.
                await attempt { try await loop.sendfile(transport, file: pipeEnds[0]) }
                let protocolBack = transport.streamProtocol is FileSendRecorder
                transport.close()
                await attempt { try await loop.sendfile(transport, file: file.fd) }
                return (errors + [protocolBack ? nil : TransportError(.other, "protocol not handed back")], try await reading.value)
            }
            #expect(errors.map { $0?.code } == [.invalidArgument, .invalidArgument, .other, .sendfileNotAvailable, .other, .closed, nil])
            #expect(errors[4]?.errno == ESPIPE)
            #expect(errors[0]?.message == "sendfile: offset must be 0 or more (got -1)")
            #expect(errors[1]?.message == "sendfile: count must be 1 or more, or nil (got 0)")
            #expect(errors[2]?.errno == EBADF)
            #expect(received == [])
        }
    }

    // TLS cannot use sendfile(2): `fallback: false` says so; by default the file is read in
    // chunks and written through TLS, and Python's ssl client gets exactly the segment, then
    // the bytes written after it.
    @Test func tlsFallsBackToReadingAndWriting() throws {
        let bytes = pattern(1_500_000)
        let file = try TempFile(bytes)
        defer { file.remove() }
        let output = file.path + ".received"
        defer { unlink(output) }
        try withLoop { loop in
            let context = try TLSContext(serverConfiguration())
            let (refusal, sent, code) = try loop.runUntilComplete { () async throws -> (TransportError?, Int, Int32) in
                let result = Future<(TransportError?, Int)>(loop: loop)
                let server = try await loop.startServer(host: "127.0.0.1", port: 0, tls: context) { _, writer in
                    do {
                        var refusal: TransportError?
                        do {
                            _ = try await writer.sendfile(file: file.fd, fallback: false)
                        } catch let error as TransportError {
                            refusal = error
                        }
                        let sent = try await writer.sendfile(file: file.fd, offset: 7)
                        writer.write("END")
                        result.completeIfPending(.success((refusal, sent)))
                    } catch {
                        result.completeIfPending(.failure(error))
                    }
                }
                defer { server.close() }
                let python = try await startPython(
                    loop, pythonSaveAll, ["\(server.addresses[0].port ?? 0)", output, "\(certificates)/ca.crt"])
                let (refusal, sent) = try await result.value
                let (code, _) = try await finishPython(python)
                return (refusal, sent, code)
            }
            #expect(code == 0)
            #expect(refusal?.code == .sendfileNotAvailable)
            #expect(sent == bytes.count - 7)
        }
        #expect(firstDifference(try contents(output), Array(bytes[7...]) + Array("END".utf8)) == nil)
    }

    // The reader goes away mid-file: the send fails with the connection's error, which the
    // protocol's connectionLost gets too.
    @Test func peerGoneEndsTheSendWithTheConnectionError() throws {
        let file = try TempFile(pattern(8 << 20))
        defer { file.remove() }
        try withLoop { loop in
            let (error, lost, lostError) = try loop.runUntilComplete {
                () async throws -> (TransportError?, Int, TransportError?) in
                let pair = try unixPair()
                let (transport, recorder) = try await loop.connectAcceptedSocket(sock: pair[0]) { FileSendRecorder() }
                nonisolated(unsafe) let target = transport   // loop-bound; the task runs on the loop
                let sending = loop.createTask { try await loop.sendfile(target, file: file.fd) }
                try await loop.sleep(for: .milliseconds(20))
                close(pair[1])
                var error: TransportError?
                do {
                    _ = try await sending.value
                } catch let caught as TransportError {
                    error = caught
                }
                try await waitUntil("connectionLost") { recorder.lost == 1 }
                return (error, recorder.lost, recorder.lostError as? TransportError)
            }
            #expect(error?.code == .brokenPipe || error?.code == .connectionReset, "\(String(describing: error))")
            #expect(lost == 1)
            #expect(lostError?.code == error?.code)
        }
    }

    // Cancelling the sending task stops the file where it is; the connection stays usable and
    // what is written next follows the part of the file that went out.
    @Test func cancelledSendKeepsTheConnectionUsable() throws {
        let bytes = pattern(8 << 20)
        let file = try TempFile(bytes)
        defer { file.remove() }
        try withLoop { loop in
            let (cancelled, received) = try loop.runUntilComplete { () async throws -> (Bool, [UInt8]) in
                let pair = try unixPair()
                let (transport, _) = try await loop.connectAcceptedSocket(sock: pair[0]) { FileSendRecorder() }
                nonisolated(unsafe) let target = transport   // loop-bound; the task runs on the loop
                let sending = loop.createTask { try await loop.sendfile(target, file: file.fd) }
                try await loop.sleep(for: .milliseconds(20))
                _ = sending.cancel(message: nil)
                var cancelled = false
                do {
                    _ = try await sending.value
                } catch is CancellationError {
                    cancelled = true
                }
                transport.write("END")
                let reading = readToEnd(pair[1], on: loop)
                transport.close()
                return (cancelled, try await reading.value)
            }
            #expect(cancelled)
            let fileBytes = received.count - 3
            #expect(fileBytes > 0 && fileBytes < bytes.count, "\(fileBytes) of \(bytes.count)")
            #expect(Array(received.suffix(3)) == Array("END".utf8))
            #expect(firstDifference(Array(received.prefix(max(fileBytes, 0))), Array(bytes.prefix(max(fileBytes, 0)))) == nil)
        }
    }

    // A write pipe takes the file with sendfile(2) too; the reading end gets every byte.
    @Test func writePipeGetsTheFile() throws {
        let bytes = pattern(600_000)
        let file = try TempFile(bytes)
        defer { file.remove() }
        try withLoop { loop in
            let (sent, received) = try loop.runUntilComplete { () async throws -> (Int, [UInt8]) in
                let ends = try closeOnExecPipe()
                let reading = readToEnd(ends[0], on: loop)
                let (transport, _) = try await loop.connectWritePipe(ends[1]) { FileSendRecorder() }
                let sent = try await loop.sendfile(transport, file: file.fd, offset: 11)
                transport.close()
                return (sent, try await reading.value)
            }
            #expect(sent == bytes.count - 11)
            #expect(firstDifference(received, Array(bytes[11...])) == nil)
        }
    }
}

@Suite(.timeLimit(.minutes(10)))
struct FileSegmentTests {
    /// Plays sendfile(2): each call takes the next scripted amount (negative: fails with that
    /// errno) and records the offset and count it was given.
    final class FakeSendfile {
        var script: [Int]
        var calls: [(offset: Int, count: Int)] = []
        init(_ script: [Int]) { self.script = script }
        func call(_ offset: inout off_t, _ count: Int) -> Int {
            calls.append((Int(offset), count))
            let next = script.isEmpty ? 0 : script.removeFirst()
            if next < 0 {
                errno = Int32(-next)
                return -1
            }
            let taken = min(next, count)
            offset += off_t(taken)
            return taken
        }
    }

    // EINTR is retried at the same offset, EAGAIN stops, the next send goes on from where the
    // last one ended, and the segment ends at its count.
    @Test func partialSendsResumeAtTheRightOffset() {
        var segment = FileSegment(file: 3, offset: 10, count: 5000)
        let kernel = FakeSendfile([-Int(EINTR), 1000, -Int(EAGAIN)])
        #expect(segment.send(kernel.call) == .wouldBlock)
        #expect(kernel.calls.map(\.offset) == [10, 10, 1010])
        #expect(kernel.calls.map(\.count) == [5000, 5000, 4000])
        #expect(segment.sent == 1000)
        kernel.script = [4000]
        #expect(segment.send(kernel.call) == .finished)
        #expect(segment.sent == 5000 && segment.remaining == 0 && segment.offset == 5010)
    }

    // To the end of the file: a slice's worth, then the loop gets a turn; 0 is the end.
    @Test func wholeFileSendsInSlicesUntilTheEnd() {
        var segment = FileSegment(file: 3, offset: 0, count: nil)
        let kernel = FakeSendfile([FileSegment.slice])
        #expect(segment.send(kernel.call) == .sliceUsed)
        #expect(kernel.calls.map(\.count) == [FileSegment.slice])
        kernel.script = [7, 0]
        #expect(segment.send(kernel.call) == .finished)
        #expect(segment.sent == FileSegment.slice + 7)
    }

    // An error is reported with its errno; what was sent before stays counted.
    @Test func failureKeepsTheCount() {
        var segment = FileSegment(file: 3, offset: 0, count: 100)
        let kernel = FakeSendfile([40, -Int(EPIPE)])
        #expect(segment.send(kernel.call) == .failed(EPIPE))
        #expect(segment.sent == 40)
    }

    // Moving a queue into another keeps every byte in order, also when the moved queue's first
    // chunk was partly sent.
    @Test func writeQueueTakesAnotherQueuesChunksInOrder() {
        var queue = WriteQueue()
        var other = WriteQueue()
        defer {
            queue.removeAll()
            other.removeAll()
        }
        [UInt8]([1, 2, 3]).withUnsafeBytes { queue.append(copying: $0) }
        [UInt8]([4, 5, 6, 7]).withUnsafeBytes { other.append(copying: $0) }
        [UInt8]([8, 9]).withUnsafeBytes { other.append(copying: $0) }
        other.consume(1)
        queue.append(takingAllOf: &other)
        #expect(other.isEmpty && other.byteCount == 0)
        #expect(queue.byteCount == 8)
        var taken: [UInt8] = []
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: 8)
        defer { iovecs.deallocate() }
        let count = queue.fill(iovecs, capacity: 8)
        for i in 0..<count {
            taken += UnsafeRawBufferPointer(start: iovecs[i].iov_base, count: iovecs[i].iov_len)
        }
        #expect(taken == [1, 2, 3, 5, 6, 7, 8, 9])
        // Into an empty queue: a plain swap.
        var empty = WriteQueue()
        empty.append(takingAllOf: &queue)
        #expect(empty.byteCount == 8 && queue.isEmpty)
        empty.removeAll()
    }
}
