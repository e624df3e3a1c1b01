//===----------------------------------------------------------------------===//
// swift-asyncio — LoopTaskGroup: asyncio.TaskGroup, children as LoopTasks on one loop.
//===----------------------------------------------------------------------===//

/// The handle of a running ``withLoopTaskGroup(_:)`` scope (asyncio's `TaskGroup`): start
/// children with ``createTask(name:_:)``.
///
/// ```swift
/// let (user, orders) = try await withLoopTaskGroup { group in
///     let user = try group.createTask(name: "user") { try await fetchUser(id) }
///     let orders = try group.createTask(name: "orders") { try await fetchOrders(id) }
///     return (user, orders)
/// }   // both children are done here, or the scope threw
/// print(try user.result(), try orders.result())
/// ```
///
/// - Important: Loop-bound: use it on the scope's loop, from the body, from the children or
///   from other tasks of that loop.
public final class LoopTaskGroup: ScopedChildOwner, @unchecked Sendable {
    // @unchecked Sendable: children capture the group to start siblings; its state is read
    // and written on the loop's thread only (every entry asserts it in debug builds).

    /// Where the group is in its life.
    private enum Phase {
        /// The body runs; children may be added.
        case open
        /// The body ended well; the scope waits for the children, which may add siblings.
        case joining
        /// A child or the body failed, or the caller was cancelled: the children and the
        /// body were cancelled; no new children.
        case aborting
        /// Every child and the body have ended.
        case finished
    }

    /// The loop the children run on.
    public let loop: EventLoop
    private var phase = Phase.open
    /// The children that have not ended, by identity.
    private var children: [ObjectIdentifier: any AnyLoopTask] = [:]
    /// Failures of the children, in the order they happened.
    private var errors: [any Error] = []
    /// The child task running the body, while it runs.
    private var body: UnsafeCurrentTask?
    /// The scope waiting for the last child, once the body ended.
    private var joinWaiter: UnsafeContinuation<Void, Never>?

    @usableFromInline
    init(loop: EventLoop) {
        self.loop = loop
    }

    /// Starts `body` as a child of the group: a ``LoopTask`` on the group's loop (listed in
    /// ``EventLoop/allTasks``, named like any task). The scope does not end before it ends;
    /// if it fails (with an error other than `CancellationError`), the other children and the
    /// scope's body are cancelled and the scope throws ``TaskGroupError``.
    ///
    /// - Parameters:
    ///   - name: A name for logs and ``LoopTask/name``; `Task-N` by default.
    ///   - body: The child's work. Every step of it runs on the loop's thread.
    /// - Returns: The child task; its result is there once the scope returned.
    /// - Throws: ``InvalidStateError`` if the group is shutting down (it aborted after a
    ///   failure or a cancellation; the body was cancelled) or has finished (the scope
    ///   returned): the task is not created. As in asyncio, a child may still add siblings
    ///   while the scope waits for the children after the body ended.
    /// - Important: Loop-bound.
    @discardableResult
    public func createTask<V: Sendable>(
        name: String? = nil,
        _ body: sending @escaping () async throws -> V
    ) throws(InvalidStateError) -> LoopTask<V> {
        loop.assertInLoop()
        switch phase {
        case .open, .joining: break
        case .aborting: throw InvalidStateError("the LoopTaskGroup is shutting down")
        case .finished: throw InvalidStateError("the LoopTaskGroup has finished")
        }
        let task = loop.createTask(name: name, body)
        let id = ObjectIdentifier(task)
        children[id] = task
        task._whenDone { [self] task in
            childEnded(id, failure: task.isCancelled ? nil : task.error)
        }
        return task
    }

    // MARK: - Transitions

    /// A child ended; `failure` is its error unless it succeeded or was cancelled.
    private func childEnded(_ id: ObjectIdentifier, failure: (any Error)?) {
        children[id] = nil
        if let failure {
            errors.append(failure)
            abort()
        }
        if children.isEmpty, let waiter = joinWaiter {
            joinWaiter = nil
            phase = .finished
            waiter.resume()
        }
    }

    /// Cancels the children and the body, once; no child may be added afterwards.
    private func abort() {
        switch phase {
        case .open, .joining:
            phase = .aborting
            for child in children.values { child.cancel() }
            body?.cancel()
        case .aborting, .finished:
            return
        }
    }

    /// The body ended, with `failure` if it threw (any error, `CancellationError` included).
    private func bodyEnded(failure: (any Error)?) {
        body = nil
        if failure != nil {
            abort()
            return
        }
        switch phase {
        case .open: phase = .joining
        case .joining, .aborting, .finished: return
        }
    }

    /// Waits until every child has ended. Cancellation of the caller meanwhile aborts the
    /// group (the children are cancelled) but does not stop the wait.
    /// - Returns: whether there were children to wait for.
    private func join() async -> Bool {
        if children.isEmpty {
            phase = .finished
            return false
        }
        let loop = self.loop
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                if children.isEmpty {
                    phase = .finished
                    continuation.resume()
                } else {
                    joinWaiter = continuation
                }
            }
        } onCancel: {
            loop.execute { self.abort() }
        }
        return true
    }

    // MARK: - The scope

    func childStarted(_ task: UnsafeCurrentTask) {
        // Aborted before the body's first step (a child failed): cancel it now.
        if case .aborting = phase { task.cancel() } else { body = task }
    }

    func childEnded() {
        body = nil
    }

    /// Runs the scope; see ``withLoopTaskGroup(_:)``. The body keeps its value itself (the
    /// generic part is inlined into the caller).
    @usableFromInline
    func run(_ body: () async throws -> Void) async throws {
        let bodyFailure = await ScopedChild.run(loop: loop, scope: self, body)
        bodyEnded(failure: bodyFailure)
        // The caller cancelled while the body ran: the body was cancelled with it and ended
        // with an error, so the group aborted above. Cancelled later: join() aborts it.
        let waited = await join()
        if let bodyFailure, !(bodyFailure is CancellationError) {
            errors.append(bodyFailure)
        }
        // Failures take priority over the caller's cancellation, as in asyncio.
        if !errors.isEmpty { throw TaskGroupError(errors: errors) }
        // The caller's cancellation cancelled the children we waited for (or the body, whose
        // CancellationError is rethrown below). A body that finished, with no child to
        // cancel, returns its value, as in asyncio.
        if waited, Task.isCancelled { throw CancellationError() }
        if let bodyFailure { throw bodyFailure }
    }
}

/// Runs `body` with a group of child tasks, with asyncio.TaskGroup's rules, and returns the
/// body's result once every child has ended.
///
/// ```swift
/// try await withLoopTaskGroup { group in
///     for url in urls {
///         try group.createTask(name: url) { try await download(url) }
///     }
/// }
/// ```
///
/// Rules (asyncio's `async with asyncio.TaskGroup() as group:`):
/// - The scope waits for every child, also after the body ended, also after a failure.
/// - The first child failure (an error other than `CancellationError`; a cancelled child is
///   not a failure) cancels every other child and the body. Then the scope waits for all of
///   them, and throws ``TaskGroupError`` with every failure, in the order they happened,
///   followed by the body's own error if it threw one (other than `CancellationError`).
/// - An error thrown by the body also cancels the children and ends up in the
///   ``TaskGroupError``.
/// - If the caller is cancelled, the body and every child are cancelled; once they have
///   ended the scope throws `CancellationError` (unless some child failed meanwhile: failures
///   take priority and the scope throws ``TaskGroupError``). A body that had already returned,
///   with no child left to cancel, still returns its value.
/// - After the scope, or while it shuts down after a failure, ``LoopTaskGroup/createTask(name:_:)``
///   throws ``InvalidStateError``.
///
/// How it works, and what it costs: asyncio cancels the caller's task to stop the body, and
/// takes the cancellation back with `Task.uncancel()` at the end. Swift cannot take a
/// cancellation back, so the body runs in a child Swift task on the same loop (every step on
/// the loop's thread, with the caller's task-locals), which the group cancels alone; the
/// caller waits for it. That costs one Swift task per scope on top of the children.
///
/// - Throws: ``TaskGroupError``, `CancellationError`, the body's `CancellationError` if it
///   threw one of its own, or ``EventLoopError/Code-swift.struct/noRunningLoop`` if the caller
///   does not run on a loop.
/// - Important: Loop-bound: call from a task running on an event loop.
@inlinable
public func withLoopTaskGroup<T>(_ body: (LoopTaskGroup) async throws -> T) async throws -> T {
    guard let loop = EventLoop.current else {
        throw EventLoopError(.noRunningLoop, "withLoopTaskGroup(_:) needs a task running on an event loop")
    }
    let group = LoopTaskGroup(loop: loop)
    var value: T?
    try await group.run { value = try await body(group) }
    guard let value else { preconditionFailure("withLoopTaskGroup: the body ended with neither a value nor an error") }
    return value
}
