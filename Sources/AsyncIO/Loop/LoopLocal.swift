//===----------------------------------------------------------------------===//
// swift-asyncio — Loop-local state: per-loop objects that upper layers own.
//===----------------------------------------------------------------------===//

import Synchronization

/// Per-loop state that a layer above the loop keeps (the transports' shared read buffer, the
/// datagram batch, TLS's plaintext buffer and idle-buffer sweep, the default executor).
///
/// The loop knows nothing of those layers: it stores such objects by ``LoopLocalKey``,
/// creates each on first use, and calls ``loopWillClose()`` once when it closes (or is freed
/// without being closed), newest first, before its selector is closed.
protocol LoopLocal: AnyObject {
    /// Releases what the object holds that would keep the loop or its resources alive.
    /// Runs on the closing thread with the loop still usable for removing watchers and
    /// cancelling timers; must not schedule new work. During the loop's deinit the loop
    /// cannot be reached through an `unowned` reference: don't touch it here.
    func loopWillClose()
}

/// The next free slot of the loops' local-storage tables.
private let nextLoopLocalIndex = Atomic<Int>(0)

/// Names one kind of ``LoopLocal`` state. Declare each key once, as a `static let`:
/// the key's index is its slot in every loop's table, so a lookup is an array access.
struct LoopLocalKey<Value: LoopLocal>: Sendable {
    let index: Int

    init() {
        index = nextLoopLocalIndex.wrappingAdd(1, ordering: .relaxed).oldValue
    }
}

extension EventLoop {
    /// The loop's `Value` for `key`, made by `make` on first use (on a closed loop, a fresh
    /// one every time, not kept).
    /// - Important: Loop-bound.
    @inline(__always)
    func local<Value>(_ key: LoopLocalKey<Value>, orMake make: () -> Value) -> Value {
        if key.index < locals.count, let value = locals[key.index] {
            return unsafeDowncast(value, to: Value.self)
        }
        return makeLocal(key, make)
    }

    /// The loop's `Value` for `key` if it was made, else `nil`. Loop-bound.
    func existingLocal<Value>(_ key: LoopLocalKey<Value>) -> Value? {
        guard key.index < locals.count, let value = locals[key.index] else { return nil }
        return unsafeDowncast(value, to: Value.self)
    }

    @inline(never)
    private func makeLocal<Value>(_ key: LoopLocalKey<Value>, _ make: () -> Value) -> Value {
        assertInLoop()
        // A closed loop keeps nothing: the caller gets a fresh object that nobody else sees
        // (whatever it does next fails with the loop's `closed` error).
        if isClosed { return make() }
        if key.index >= locals.count {
            locals.append(contentsOf: repeatElement(nil, count: key.index + 1 - locals.count))
        }
        let value = make()
        locals[key.index] = value
        localsInOrder.append(value)
        return value
    }
}
