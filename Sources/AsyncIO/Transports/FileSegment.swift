//===----------------------------------------------------------------------===//
// swift-asyncio — FileSegment: the part of a file a transport sends with sendfile(2).
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// The part of a file that a stream transport still has to send with `sendfile(2)`
/// (``EventLoop/sendfile(_:file:offset:count:fallback:)``'s native path), and what was sent.
///
/// Sans-I/O like ``WriteQueue``: ``send(_:)`` takes the system call as a closure, so tests can
/// play a kernel that takes any number of bytes.
struct FileSegment {
    /// The file read from (not owned: the caller closes it).
    let file: Int32
    /// The file offset to send from next.
    private(set) var offset: Int
    /// Bytes left to send; `nil`: up to the end of the file.
    private(set) var remaining: Int?
    /// Bytes sent so far.
    private(set) var sent = 0

    /// The most one `sendfile` call moves on Linux (larger counts are cut to it).
    static let largestCall = 0x7fff_f000
    /// The most one ``send(_:)`` moves before it returns `.sliceUsed`: a reader on another
    /// core can keep a socket writable for the whole file, and the loop has other callbacks to
    /// run (4 MiB is about a millisecond on loopback).
    static let slice = 4 << 20

    init(file: Int32, offset: Int, count: Int?) {
        self.file = file
        self.offset = offset
        self.remaining = count
    }

    /// How a ``send(_:)`` ended.
    enum Progress: Equatable {
        /// The segment was sent, or the file ended before its end.
        case finished
        /// The socket takes no more for now.
        case wouldBlock
        /// ``slice`` bytes went out: the transport should let the loop run, then go on.
        case sliceUsed
        /// The call failed with this errno.
        case failed(Int32)
    }

    /// Sends as much as the socket takes, up to ``slice`` bytes.
    ///
    /// `call(offset, count)` is `sendfile(socket, file, &offset, count)`: bytes sent, or -1
    /// with `errno` set. EINTR is retried; 0 means the file ended.
    mutating func send(_ call: (_ offset: inout off_t, _ count: Int) -> Int) -> Progress {
        var budget = Self.slice
        while remaining != 0 {
            guard budget > 0 else { return .sliceUsed }
            var fileOffset = off_t(offset)
            let count = min(remaining ?? Self.largestCall, Self.largestCall, budget)
            switch nonBlockingResult(call(&fileOffset, count)) {
            case .done(0):
                return .finished
            case .done(let n):
                offset += n
                sent += n
                budget -= n
                if let left = remaining { remaining = left - n }
            case .wouldBlock:
                return .wouldBlock
            case .interrupted:
                continue
            case .failed(let code):
                return .failed(code)
            }
        }
        return .finished
    }
}

/// A file being sent by a ``SocketTransport``: the segment, the bytes written meanwhile (they
/// go after the file), and who waits for the outcome.
final class FileSendOperation {
    var segment: FileSegment
    /// Bytes the protocol wrote while the file was being sent: they follow the file.
    var heldWrites = WriteQueue()
    /// Called once, on the loop, with the bytes sent or why the send stopped.
    private var completion: ((Result<Int, TransportError>) -> Void)?

    init(_ segment: FileSegment, completion: @escaping (Result<Int, TransportError>) -> Void) {
        self.segment = segment
        self.completion = completion
    }

    /// Reports the outcome (once; later calls do nothing).
    func complete(_ result: Result<Int, TransportError>) {
        let call = completion
        completion = nil
        call?(result)
    }

    deinit {
        heldWrites.removeAll()
    }
}
