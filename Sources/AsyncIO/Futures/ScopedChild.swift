//===----------------------------------------------------------------------===//
// swift-asyncio — ScopedChild: a scope's body run as a child task that can be cancelled alone.
//===----------------------------------------------------------------------===//

/// Runs the body of a scope (``timeout(after:_:)``, ``withLoopTaskGroup(_:)``) in a structured
/// child task (an `async let`), so that the scope can cancel the body without cancelling the
/// caller.
///
/// Why: asyncio's timeout and TaskGroup cancel the *current* task and later take the request
/// back with `Task.uncancel()`. A Swift task's cancellation cannot be undone, so the body runs
/// in a task of its own instead, and the scope cancels that one:
/// - the caller awaits the child until it ends; cancelling the caller cancels the child (a
///   structured child), and the non-escaping body never outlives the call
///   (`withoutActuallyEscaping` checks that);
/// - the child inherits the caller's task executor preference, the loop: every step of the
///   body runs on the loop's thread, as the caller's would have. A caller that found
///   `EventLoop.current` without that preference (a `Task.immediate` started inside a loop
///   step) is refused: the child traps in its first step, off the loop;
/// - the loop is told that the child runs for the caller's ``LoopTask``, so
///   ``LoopTask/current`` in the body is the caller's task (the child's own waits still take
///   cancellation handlers: the scope cancels the child alone).
///
/// Cost: one child task, allocated from the caller's task allocator (no `malloc`), one extra
/// pass of the loop to start it and one to resume the caller.
enum ScopedChild {
    /// Runs `body` as a child task and returns its error once it has ended, or `nil` if it
    /// returned. Not generic: a scope's generic entry point (inlined into its caller) keeps
    /// the body's value itself, so no generic metadata is looked up per scope.
    ///
    /// In the child, on the loop's thread, `scope` hears of the child's task twice (see
    /// ``ScopedChildOwner``). The scope is an object rather than two closures: each closure
    /// would be a context allocated per scope.
    static func run(
        loop: EventLoop,
        scope: any ScopedChildOwner,
        _ body: () async throws -> Void
    ) async -> (any Error)? {
        // The caller's own Swift task: the child runs for the LoopTask that task runs for, if
        // any. Not the task whose step the loop runs: a `Task.immediate` started inside that
        // step runs in the step too, and may outlive the LoopTask (whose slot is then reused).
        let caller = withUnsafeCurrentTask { task in task.map { unsafeBitCast($0, to: UnsafeRawPointer.self) } }
        return await withoutActuallyEscaping(body) { body in
            let transfer = Transfer(loop: loop, caller: caller, body: body, scope: scope)
            async let failure = transfer.run()
            return await failure
        }
    }

    /// The body and its scope, handed to the child task.
    private struct Transfer: @unchecked Sendable {
        // @unchecked Sendable: the caller is suspended (awaiting the child) for the child's
        // whole life, so none of this is used by two tasks at once.
        let loop: EventLoop
        /// The address of the caller's Swift task.
        let caller: UnsafeRawPointer?
        let body: () async throws -> Void
        let scope: any ScopedChildOwner

        func run() async -> (any Error)? {
            // The child inherits the caller's executor preference. A caller that found
            // `EventLoop.current` but has no such preference (a `Task.immediate` started
            // inside a loop step) would have the scope's state touched from the global pool:
            // a data race; refuse it.
            precondition(
                loop.inLoopThread,
                "EventLoop '\(loop.name)': a timeout or task group scope was entered from a task that does not run on the loop (give it the loop's executor preference, or use a LoopTask)")
            let bound = withUnsafeCurrentTask { task -> UnsafeRawPointer? in
                guard let task else { return nil }
                // Looked up now, in the child's first step: an eager task's Swift task is
                // known to the loop once its first step (which awaits this child) returned.
                // The caller awaits the child, so its entry outlives the child's.
                var bound: UnsafeRawPointer?
                if let caller, let entry = loop.liveTasks.byAddress.find(caller) {
                    let address = unsafeBitCast(task, to: UnsafeRawPointer.self)
                    loop.liveTasks.bind(address, toSlot: Int(entry.slot), own: false)
                    bound = address
                }
                scope.childStarted(task)
                return bound
            }
            defer {
                if let bound {
                    loop.liveTasks.unbind(bound)
                }
                scope.childEnded()
            }
            do {
                try await body()
                return nil
            } catch {
                return error
            }
        }
    }
}

/// A scope whose body runs as a ``ScopedChild``: told of the child's task, in the child, on the
/// loop's thread.
protocol ScopedChildOwner: AnyObject {
    /// The child's task, before the body runs: the scope may cancel it (and should at once if
    /// it already decided to).
    func childStarted(_ task: UnsafeCurrentTask)
    /// The body ended; the child still exists. The scope must not use the task afterwards.
    func childEnded()
}
