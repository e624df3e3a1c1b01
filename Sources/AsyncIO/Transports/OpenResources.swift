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

/// A ``LoopClosingAware`` object that joins the loop's ``OpenResources`` while it holds an fd:
/// it keeps its slot in the table, so joining and leaving hash nothing.
protocol OpenResource: LoopClosingAware {
    /// Its index in ``OpenResources``' table while a member, -1 otherwise (set by the table).
    var openResourceSlot: Int { get set }
}

/// The loop's transports and servers that hold an fd (loop-local state): each joins when it
/// starts and leaves when it is done (a transport's `connectionLost` ran, a server closed);
/// those still here when the loop closes are told. Without this a transport closed just
/// before the loop kept itself, its protocol and its fd forever (found by LeakSanitizer), and
/// a listening server its sockets.
///
/// A slot table with a free list, each member knowing its slot: a dictionary keyed by
/// `ObjectIdentifier` hashed twice per connection, about 700 instructions of the ~9,500 a
/// protocol server spends per connection (`echo-callgrind.sh --churn`).
final class OpenResources: LoopLocal {
    static let key = LoopLocalKey<OpenResources>()

    // Loop-confined (loop-local state): no dynamic exclusivity checks.
    @exclusivity(unchecked) private var slots: [(any OpenResource)?] = []
    @exclusivity(unchecked) private var freeSlots: [Int] = []
    /// How many transports and servers hold an fd (tests).
    var count: Int { slots.count - freeSlots.count }

    func insert(_ member: any OpenResource) {
        guard member.openResourceSlot < 0 else { return }   // a member already
        let slot: Int
        if let reused = freeSlots.popLast() {
            slot = reused
            slots[slot] = member
        } else {
            slot = slots.count
            slots.append(member)
        }
        member.openResourceSlot = slot
    }

    func remove(_ member: any OpenResource) {
        let slot = member.openResourceSlot
        guard slot >= 0, slot < slots.count, let current = slots[slot], current === member else { return }
        slots[slot] = nil
        freeSlots.append(slot)
        member.openResourceSlot = -1
    }

    func loopWillClose() {
        let left = slots.compactMap { $0 }
        slots = []
        freeSlots = []
        for member in left {
            member.openResourceSlot = -1
            member.loopClosed()
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
