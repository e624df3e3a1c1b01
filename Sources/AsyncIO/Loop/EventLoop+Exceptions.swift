//===----------------------------------------------------------------------===//
// swift-asyncio — The loop's exception handler (asyncio's call_exception_handler).
//===----------------------------------------------------------------------===//

public import Logging

/// What ``EventLoop/callExceptionHandler(_:)`` reports: an error that escaped a callback, or
/// another condition the loop could not hand back to a caller (asyncio's exception context).
public struct ExceptionContext: Sendable, CustomStringConvertible {
    /// A sentence saying what happened.
    public var message: String
    /// The error, if there is one.
    public var error: (any Error)?
    /// What it came from: a callback, a future or a task's description.
    public var source: String?
    /// The logger of what it came from, if it has its own: a connection's logger (see
    /// ``StreamTransport/logger``) carries its `connection` and `peer` metadata. The default
    /// handler logs through it, or through the loop's logger if it is `nil`.
    public var logger: Logger?

    /// Creates a context for ``EventLoop/callExceptionHandler(_:)``.
    public init(message: String, error: (any Error)? = nil, source: String? = nil, logger: Logger? = nil) {
        self.message = message
        self.error = error
        self.source = source
        self.logger = logger
    }

    /// The message, then `[source]` and the error, as the default handler logs them.
    public var description: String {
        var text = message
        if let source { text += " [\(source)]" }
        if let error { text += ": \(error)" }
        return text
    }
}

extension EventLoop {

    /// Replaces the exception handler; `nil` restores the default, which logs the context
    /// at error level through the context's logger, or ``logger`` if it has none.
    /// - Important: Loop-bound.
    public func setExceptionHandler(_ handler: ((EventLoop, ExceptionContext) -> Void)?) {
        assertInLoop()
        exceptionHandler = handler
    }

    /// Reports `context` to the exception handler (asyncio's `call_exception_handler`).
    /// An exception handler must not throw; it runs on the loop.
    /// - Important: Loop-bound.
    public func callExceptionHandler(_ context: ExceptionContext) {
        if let exceptionHandler {
            exceptionHandler(self, context)
        } else {
            defaultExceptionHandler(context)
        }
    }

    /// Logs `context` at error level (the default exception handler) through
    /// ``ExceptionContext/logger``, or through the loop's ``logger`` (whose metadata has the
    /// loop's name as `loop`) if the context has none; the error and the source go in the
    /// metadata as `error` and `source`.
    public func defaultExceptionHandler(_ context: ExceptionContext) {
        var metadata: Logger.Metadata = [:]
        if let error = context.error { metadata["error"] = "\(error)" }
        if let source = context.source { metadata["source"] = "\(source)" }
        (context.logger ?? logger).error("\(context.message)", metadata: metadata)
    }
}
