//===----------------------------------------------------------------------===//
// swift-asyncio — OpenResources: what a closing loop must tell to let go of its fds.
//===----------------------------------------------------------------------===//

/// A transport or server that keeps itself alive while it holds a file descriptor the loop
/// serves.
protocol LoopClosingAware: AnyObject {
    /// The loop is closing with this object still holding its fd: a transport open, or closed
    /// in the loop's last pass with its `connectionLost` still queued (a closing loop drops
    /// queued callbacks, as asyncio's does); a server still listening. Close the fd and drop
    /// the protocol and the self-reference, without calling the protocol: nothing may leak,
    /// and no user code runs inside `EventLoop.close()`. Must not touch the loop (it may be in
    /// its deinit).
    func loopClosed()
}

/// The loop's transports and servers that hold an fd (loop-local state): each joins when it
/// starts and leaves when it is done (a transport's `connectionLost` ran, a server closed);
/// those still here when the loop closes are told. Without this a transport closed just
/// before the loop kept itself, its protocol and its fd forever (found by LeakSanitizer), and
/// a listening server its sockets.
final class OpenResources: LoopLocal {
    static let key = LoopLocalKey<OpenResources>()

    private var members: [ObjectIdentifier: any LoopClosingAware] = [:]

    func insert(_ transport: any LoopClosingAware) {
        members[ObjectIdentifier(transport)] = transport
    }

    func remove(_ transport: any LoopClosingAware) {
        members[ObjectIdentifier(transport)] = nil
    }

    /// How many transports and servers hold an fd (tests).
    var count: Int { members.count }

    func loopWillClose() {
        let left = members.values
        members = [:]
        for transport in left {
            transport.loopClosed()
        }
    }
}

@available(*, unavailable)
extension OpenResources: Sendable {}

extension EventLoop {
    /// The loop's transports and servers that hold an fd (loop-bound).
    var openResources: OpenResources {
        local(OpenResources.key) { OpenResources() }
    }
}
