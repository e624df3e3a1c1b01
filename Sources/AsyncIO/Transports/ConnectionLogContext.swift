//===----------------------------------------------------------------------===//
// swift-asyncio — ConnectionLogContext: a connection's logger, made only when it logs.
//===----------------------------------------------------------------------===//

import Logging
import Synchronization

/// Numbers connections, process-wide (the `connection` metadata of their loggers).
private let connectionCounter = Atomic<UInt64>(0)

/// What a connection logs through: the logger of whatever made it (its ``Server``, or the
/// caller of `createConnection`) and the connection's number, unique in the process.
///
/// The connection's own `Logger`, the base plus `connection` and `peer` metadata, is made
/// only when something is logged: a connection that logs nothing costs one retain of the base
/// logger and one atomic increment when it is made, and nothing per message.
struct ConnectionLogContext {
    /// The logger of what made the connection.
    let base: Logger
    /// The connection's number (metadata `connection`).
    let id: UInt64

    /// A context with the next connection number.
    init(base: Logger) {
        self.base = base
        self.id = connectionCounter.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// The connection's logger: `base` with `connection` and, if known, `peer` metadata.
    func logger(peer: SocketAddress?) -> Logger {
        var logger = base
        logger[metadataKey: "connection"] = "\(id)"
        if let peer { logger[metadataKey: "peer"] = "\(peer)" }
        return logger
    }
}
