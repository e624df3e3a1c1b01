//===----------------------------------------------------------------------===//
// swift-asyncio — StreamReader as an AsyncSequence: chunks and lines for `for try await`.
//===----------------------------------------------------------------------===//

extension StreamReader {
    /// Iterates over the stream in chunks as they arrive, until EOF (the same as ``chunks``).
    ///
    /// asyncio's `async for` over a reader yields lines; here the reader itself yields
    /// chunks, as Swift's byte-stream sequences do, and ``lines`` yields lines.
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let reader: StreamReader

        @usableFromInline init(reader: StreamReader) { self.reader = reader }

        /// The next chunk (at most ``StreamReader/limit`` bytes), `nil` at EOF. Inlined into
        /// the caller's frame: one async frame per chunk (the read's) instead of two.
        @inlinable
        nonisolated(nonsending) public mutating func next() async throws -> [UInt8]? {
            let chunk = try await reader.read(max: reader.limit)
            return chunk.isEmpty ? nil : chunk
        }

        /// What `for try await` calls: the same as ``next()``, without the standard library's
        /// default wrapper (one async frame and one executor check less per chunk).
        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> [UInt8]? {
            try await next()
        }
    }

    /// Iterates over the stream in chunks; see ``AsyncIterator``.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(reader: self)
    }

    /// The stream in chunks as they arrive (at most ``limit`` bytes each), until EOF.
    public var chunks: StreamReader { self }

    /// The stream's lines, `"\n"` included, until EOF (asyncio's `async for line in reader`):
    /// a last line without `"\n"` comes as it is.
    public var lines: Lines { Lines(reader: self) }

    /// The lines of a ``StreamReader``; see ``StreamReader/lines``.
    public struct Lines: AsyncSequence, Sendable {
        /// Each element is a line, its `"\n"` included.
        public typealias Element = [UInt8]
        let reader: StreamReader

        /// Reads the next line with ``StreamReader/readLine()``.
        public struct AsyncIterator: AsyncIteratorProtocol {
            let reader: StreamReader

            /// The next line, `nil` at EOF.
            /// - Throws: what ``StreamReader/readLine()`` throws.
            nonisolated(nonsending) public mutating func next() async throws -> [UInt8]? {
                let line = try await reader.readLine()
                return line.isEmpty ? nil : line
            }
        }

        /// Iterates over the lines.
        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(reader: reader)
        }
    }
}
