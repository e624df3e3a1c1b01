//===----------------------------------------------------------------------===//
// swift-asyncio — SocketBuffers: the read buffer and iovec array a loop's transports share.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// The buffers every stream transport of one loop shares (loop-local state): a 256 KiB read
/// buffer that `dataReceived` gets a borrowed view of, and 64 iovecs for gathered sends.
/// One loop runs one callback at a time, so one buffer serves all its connections.
final class SocketBuffers: LoopLocal {
    static let key = LoopLocalKey<SocketBuffers>()
    static let readBufferSize = 256 * 1024
    static let iovecCount = 64

    let readBuffer: UnsafeMutableRawBufferPointer
    let iovecs: UnsafeMutablePointer<iovec>

    init() {
        readBuffer = .allocate(byteCount: Self.readBufferSize, alignment: 16)
        iovecs = .allocate(capacity: Self.iovecCount)
        iovecs.initialize(repeating: iovec(), count: Self.iovecCount)
    }

    deinit {
        readBuffer.deallocate()
        iovecs.deallocate()
    }

    func loopWillClose() {}
}

@available(*, unavailable)
extension SocketBuffers: Sendable {}

extension EventLoop {
    /// The loop's shared socket buffers (loop-bound; a transport keeps the object, so the
    /// buffers stay valid for as long as it runs).
    var socketBuffers: SocketBuffers {
        local(SocketBuffers.key) { SocketBuffers() }
    }
}
