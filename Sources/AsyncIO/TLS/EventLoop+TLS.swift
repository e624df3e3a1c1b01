//===----------------------------------------------------------------------===//
// swift-asyncio — startTLS: upgrade a live connection to TLS.
//===----------------------------------------------------------------------===//

extension EventLoop {
    /// Upgrades a connected transport to TLS (asyncio's `loop.start_tls`) and returns the TLS
    /// transport once the handshake succeeded. The transport's protocol stays the
    /// application's: from now on it receives decrypted bytes and writes through the returned
    /// transport (it does not see a second `connectionMade`).
    ///
    /// Bytes that already arrived and belong to TLS — say a ClientHello that came in the same
    /// segment as a PROXY header — go in `alreadyReceived` and are not lost. Pause the plain
    /// transport's reading until this call (it resumes it) so nothing else slips through.
    ///
    /// ```swift
    /// // A server that reads a plaintext preamble, then speaks TLS.
    /// transport.pauseReading()
    /// let secure = try await loop.startTLS(transport, context: serverContext, alreadyReceived: rest)
    /// ```
    /// - Parameters:
    ///   - transport: The plain transport, open; the TLS layer takes it over (its protocol
    ///     becomes the layer, and closing the layer closes it).
    ///   - context: A server or client ``TLSContext``: it decides which side we are.
    ///   - serverHostname: Clients: the name for SNI and the certificate check (required
    ///     unless the context's `verifyPeer` or `verifyHostname` is off).
    ///   - session: Clients: a session to resume.
    ///   - alreadyReceived: Bytes read from the transport that belong to the TLS stream.
    /// - Returns: The TLS transport, after the handshake; it calls the plain transport's
    ///   protocol from now on.
    /// - Throws: ``TLSError`` if the handshake fails or times out (the connection is then
    ///   closed and the protocol gets `connectionLost` with the error),
    ///   ``TransportError`` `.closed` if the transport is already closing.
    /// - Important: Call from a task running on this loop.
    public func startTLS(
        _ transport: any StreamTransport,
        context: TLSContext,
        serverHostname: String? = nil,
        session: TLSSession? = nil,
        alreadyReceived: [UInt8] = []
    ) async throws -> any StreamTransport {
        preconditionInLoop()
        guard !transport.isClosing else { throw TransportError.closedTransport }
        let handshake = Future<Void>(loop: self)
        let paused = (transport as? any WritePauseReporting)?.isWritingPaused ?? false
        let layer = try TLSTransport(
            loop: self, context: context, app: transport.streamProtocol, serverHostname: serverHostname,
            session: session, waiter: handshake, appAlreadyConnected: true, appWritePaused: paused)
        transport.streamProtocol = layer
        layer.attach(to: transport, alreadyReceived: alreadyReceived)
        do {
            try await handshake.value
        } catch {
            layer.abort(reporting: error)   // e.g. cancelled: the protocol hears why
            throw error
        }
        return layer
    }
}
