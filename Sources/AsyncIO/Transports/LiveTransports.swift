//===----------------------------------------------------------------------===//
// swift-asyncio — LiveTransports: what a closing loop must tell to let go of its fds.
//===----------------------------------------------------------------------===//

/// A transport that keeps itself alive while it holds a file descriptor the loop serves.
protocol LoopClosingAware: AnyObject {
    /// The loop is closing with this transport still holding its fd: open, or closed in the
    /// loop's last pass with its `connectionLost` still queued (a closing loop drops queued
    /// callbacks, as asyncio's does). Close the fd and drop the protocol and the
    /// self-reference, without calling the protocol: nothing may leak, and no user code runs
    /// inside `EventLoop.close()`. Must not touch the loop (it may be in its deinit).
    func loopClosed()
}

/// The loop's transports that hold an fd (loop-local state): each joins when it starts and
/// leaves when its `connectionLost` ran; those still here when the loop closes are told.
/// Without this a transport closed just before the loop kept itself, its protocol and its
/// fd forever (found by LeakSanitizer).
final class LiveTransports: LoopLocal {
    static let key = LoopLocalKey<LiveTransports>()

    private var members: [ObjectIdentifier: any LoopClosingAware] = [:]

    func insert(_ transport: any LoopClosingAware) {
        members[ObjectIdentifier(transport)] = transport
    }

    func remove(_ transport: any LoopClosingAware) {
        members[ObjectIdentifier(transport)] = nil
    }

    /// How many transports hold an fd (tests).
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
extension LiveTransports: Sendable {}

extension EventLoop {
    /// The loop's transports that hold an fd (loop-bound).
    var liveTransports: LiveTransports {
        local(LiveTransports.key) { LiveTransports() }
    }
}
