//===----------------------------------------------------------------------===//
// swift-asyncio — Errors of the streams API.
//===----------------------------------------------------------------------===//

/// The stream ended before the requested bytes arrived (asyncio's `IncompleteReadError`).
public struct IncompleteReadError: Error, Hashable, CustomStringConvertible {
    /// The bytes read before EOF (they are consumed from the stream).
    public let partial: [UInt8]
    /// How many bytes were asked for, `nil` when reading until a separator.
    public let expected: Int?

    /// An error for `partial` bytes read before EOF when `expected` were asked for.
    public init(partial: [UInt8], expected: Int?) {
        self.partial = partial
        self.expected = expected
    }

    /// The counts, for people.
    public var description: String {
        "IncompleteReadError: \(partial.count) bytes read before EOF, \(expected.map { "\($0)" } ?? "a separator") expected"
    }
}

/// A separator was not found within the reader's limit (asyncio's `LimitOverrunError`).
/// The bytes stay in the reader's buffer.
public struct LimitOverrunError: Error, Hashable, CustomStringConvertible {
    /// How many bytes are buffered without the separator (or up to and including it, if it
    /// was found past the limit).
    public let consumed: Int
    /// The reader's limit.
    public let limit: Int

    /// An error for `consumed` bytes buffered without a separator against `limit`.
    public init(consumed: Int, limit: Int) {
        self.consumed = consumed
        self.limit = limit
    }

    /// The limit and the buffered count, for people.
    public var description: String {
        "LimitOverrunError: separator not found within the limit of \(limit) bytes (\(consumed) buffered)"
    }
}
