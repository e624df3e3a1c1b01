//===----------------------------------------------------------------------===//
// swift-asyncio — ScopedChild: a scope's body run as a child task that can be cancelled alone.
//===----------------------------------------------------------------------===//

/// Runs the body of a scope (``timeout(after:_:)``, ``withLoopTaskGroup(_:)``) in a child
/// Swift task on a loop, so that the scope can cancel the body without cancelling the caller.
///
/// Why: asyncio's timeout and TaskGroup cancel the *current* task and later take the request
/// back with `Task.uncancel()`. A Swift task's cancellation cannot be undone, so the body runs
/// in a task of its own instead, and the scope cancels that one:
/// - the caller awaits the child until it ends, whatever happens (its own cancellation is
///   forwarded to the child, it does not stop the wait), so the non-escaping body never
///   outlives the call (`withoutActuallyEscaping` checks that);
/// - the child prefers the loop as its task executor: every step of the body runs on the
///   loop's thread, as the caller's would have;
/// - task-locals are copied, so ``LoopTask/current`` in the body is the caller's task.
///
/// Cost: one Swift task (its allocation and one extra pass of the loop to start it, one to
/// resume the caller) and a small box for the outcome.
enum ScopedChild {
    /// Runs `body` as a child task on `loop` and returns its outcome once it has ended.
    ///
    /// `started` receives the child's handle before the child's first step runs, so the scope
    /// can cancel it (from the loop's thread or any other: `Task.cancel()` is thread-safe).
    static func run<T>(
        on loop: EventLoop,
        started: (Task<Void, Never>) -> Void,
        _ body: () async throws -> T
    ) async -> Result<T, any Error> {
        await withoutActuallyEscaping(body) { escapable in
            let outcome = Outcome<T>()
            let transfer = Transfer(body: escapable, outcome: outcome)
            let child = Task(executorPreference: loop.taskExecutor) {
                let work = transfer
                do {
                    work.outcome.result = .success(try await work.body())
                } catch {
                    work.outcome.result = .failure(error)
                }
            }
            started(child)
            await withTaskCancellationHandler {
                await child.value
            } onCancel: {
                child.cancel()
            }
            return outcome.result ?? .failure(CancellationError())
        }
    }

    /// Where the child leaves the body's outcome for the caller.
    private final class Outcome<T> {
        var result: Result<T, any Error>?
    }

    /// The body and the outcome box, handed to the child task.
    private struct Transfer<T>: @unchecked Sendable {
        // @unchecked Sendable: the caller is suspended (awaiting the child) for the child's
        // whole life and reads the outcome only after the child has ended, so the body and
        // the box are never used by two tasks at once.
        let body: () async throws -> T
        let outcome: Outcome<T>
    }
}
