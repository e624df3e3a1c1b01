//===----------------------------------------------------------------------===//
// swift-asyncio — WriteQueue: the bytes a stream transport could not send yet.
//===----------------------------------------------------------------------===//

import DequeModule
#if canImport(Glibc)
import Glibc
#endif

/// The unsent bytes of a stream transport: heap copies owned by the queue (stable addresses,
/// so a gathered send can point iovecs at them), sent front first.
///
/// Sans-I/O: ``drain(iovecs:capacity:send:)`` takes the send call as a closure, so tests can
/// play a kernel that takes any number of bytes.
///
/// - Important: It owns the chunks' memory: its owner calls ``removeAll()`` before it goes
///   away, and never copies it (two copies would free the chunks twice). It is not
///   `~Copyable` only because a noncopyable stored property gets a dynamic exclusivity check
///   on every access, which `@exclusivity(unchecked)` does not remove (~75 instructions per
///   echoed message, measured with callgrind).
struct WriteQueue {
    private var chunks = Deque<UnsafeMutableRawBufferPointer>()
    /// Bytes of the first chunk already sent.
    private var firstOffset = 0
    /// Unsent bytes in all chunks.
    private(set) var byteCount = 0

    init() {}

    var isEmpty: Bool { chunks.isEmpty }

    /// Appends a copy of `bytes` (nothing for an empty buffer).
    mutating func append(copying bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        chunk.copyMemory(from: bytes)
        chunks.append(chunk)
        byteCount += chunk.count
    }

    /// Moves every chunk of `other` to the end of this queue (no copy); `other` is left empty.
    mutating func append(takingAllOf other: inout WriteQueue) {
        guard !other.isEmpty else { return }
        if isEmpty {
            swap(&self, &other)
            return
        }
        // Chunks after the first are never partly sent: the other queue's first one may be.
        if other.firstOffset > 0, let first = other.chunks.first {
            append(copying: UnsafeRawBufferPointer(rebasing: first[other.firstOffset...]))
            other.consume(first.count - other.firstOffset)
        }
        chunks.append(contentsOf: other.chunks)
        byteCount += other.byteCount
        other.chunks.removeAll()
        other.byteCount = 0
    }

    /// Points up to `capacity` iovecs at the unsent bytes, in order; returns how many.
    func fill(_ iovecs: UnsafeMutablePointer<iovec>, capacity: Int) -> Int {
        let count = min(chunks.count, capacity)
        for i in 0..<count {
            let chunk = chunks[i]
            let offset = i == 0 ? firstOffset : 0
            // SAFETY: the queue owns each chunk's memory until `consume` frees it.
            iovecs[i] = iovec(iov_base: chunk.baseAddress.map { $0 + offset }, iov_len: chunk.count - offset)
        }
        return count
    }

    /// Drops `count` sent bytes from the front.
    mutating func consume(_ count: Int) {
        precondition(count <= byteCount, "WriteQueue: consumed more than was queued")
        var remaining = count
        byteCount -= count
        while remaining > 0, let first = chunks.first {
            let left = first.count - firstOffset
            if remaining >= left {
                remaining -= left
                chunks.removeFirst().deallocate()
                firstOffset = 0
            } else {
                firstOffset += remaining
                remaining = 0
            }
        }
    }

    /// Frees every queued byte.
    mutating func removeAll() {
        for chunk in chunks { chunk.deallocate() }
        chunks.removeAll()
        byteCount = 0
        firstOffset = 0
    }

    /// How a drain ended.
    enum DrainResult: Equatable {
        /// Everything was sent.
        case drained
        /// The kernel took no more for now.
        case wouldBlock
        /// The send failed with this errno.
        case failed(Int32)
    }

    /// Sends as much as `send` takes, gathering up to `capacity` chunks per call.
    ///
    /// `send(iovecs, count)` is a gathered write (sendmsg, writev) returning what the syscall
    /// returned: bytes sent, or -1 with `errno` set. EINTR is retried, EAGAIN ends the drain.
    mutating func drain(
        iovecs: UnsafeMutablePointer<iovec>, capacity: Int,
        send: (UnsafeMutablePointer<iovec>, Int) -> Int
    ) -> DrainResult {
        while !isEmpty {
            let count = fill(iovecs, capacity: capacity)
            switch nonBlockingResult(send(iovecs, count)) {
            case .done(let sent):
                consume(sent)
                if sent == 0 { return .wouldBlock }
            case .wouldBlock:
                return .wouldBlock
            case .interrupted:
                continue
            case .failed(let code):
                return .failed(code)
            }
        }
        return .drained
    }
}

/// What a non-blocking I/O call's return value means, read once with its errno: the one
/// place that decides EINTR (retry) and EAGAIN/EWOULDBLOCK (wait for readiness).
enum NonBlockingResult: Equatable {
    case done(Int)
    case wouldBlock
    case interrupted
    case failed(Int32)
}

/// Classifies the return value `n` of read/write/send/recv-like calls (reads `errno` when
/// `n < 0`, so call it right after the syscall).
@inline(__always)
func nonBlockingResult(_ n: Int) -> NonBlockingResult {
    if n >= 0 { return .done(n) }
    let code = errno
    switch code {
    case EINTR: return .interrupted
    case EAGAIN, EWOULDBLOCK: return .wouldBlock
    default: return .failed(code)
    }
}
