//===----------------------------------------------------------------------===//
// swift-asyncio — TaskGroupError: every failure of a LoopTaskGroup, reported together.
//===----------------------------------------------------------------------===//

/// The failures of a ``withLoopTaskGroup(_:)`` scope, all of them, in the order they
/// happened (asyncio's `ExceptionGroup` as raised by `TaskGroup`).
///
/// It lists the errors of the children that failed (cancelled children are not failures),
/// then the body's own error if it threw one other than `CancellationError`.
///
/// ```swift
/// do {
///     try await withLoopTaskGroup { group in … }
/// } catch let failure as TaskGroupError {
///     for error in failure.errors { print(error) }
/// }
/// ```
public struct TaskGroupError: Error, CustomStringConvertible {
    /// The errors, in the order they happened; never empty.
    public let errors: [any Error]

    /// Creates the error for `errors`.
    public init(errors: [any Error]) {
        self.errors = errors
    }

    /// `TaskGroupError: N error(s): first; second; …`.
    public var description: String {
        let list = errors.map { "\($0)" }.joined(separator: "; ")
        return "TaskGroupError: \(errors.count) error(s): \(list)"
    }

    /// Whether some error of the group (looking inside nested groups too) is of type `E`,
    /// e.g. `failure.contains(TimeoutError.self)`.
    public func contains<E: Error>(_ type: E.Type) -> Bool {
        errors.contains { error in
            if error is E { return true }
            if let nested = error as? TaskGroupError { return nested.contains(type) }
            return false
        }
    }
}
