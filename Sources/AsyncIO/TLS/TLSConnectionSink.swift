//===----------------------------------------------------------------------===//
// swift-asyncio — TLSConnectionSink: the actions of the TLS core.
//===----------------------------------------------------------------------===//

/// What a ``TLSConnection`` asks of whoever drives it: its actions, one call each, as they
/// happen. ``TLSTransport`` is the sink over a socket transport; tests record them. Subclass
/// and override every method (the defaults do nothing).
///
/// A class rather than a protocol for the hot path: the connection calls its sink through an
/// `Unmanaged` reference it borrows for the call (no retain or release per record, which a
/// protocol existential held `unowned(unsafe)` costs: ~80 instructions per echoed message),
/// and the call is one vtable dispatch.
///
/// Buffers are borrowed for the length of the call. ``tlsSend(_:)`` is called from inside
/// OpenSSL (but for the records of a handshake step, sent as one flight): it must not call
/// back into the connection; work that would (telling an application to pause, which may
/// close) waits for ``TLSConnection/requestReturnNotice()``. Every other action may call
/// back (write, pause, close, abort): the connection checks its state after each.
class TLSConnectionSink {
    /// Send these records (or this handshake flight) to the peer.
    func tlsSend(_ records: UnsafeRawBufferPointer) {}
    /// The handshake finished: the connection is ``TLSConnection/Phase/established``.
    func tlsHandshakeCompleted() {}
    /// Application data the peer sent (one record's worth).
    func tlsDeliver(_ plaintext: UnsafeRawBufferPointer) {}
    /// With ``TLSConnection/deliversIntoSinkBuffers``: room for the next record's plaintext,
    /// or nil to stop reading (the sink failed and closed the connection).
    func tlsPlaintextBuffer() -> UnsafeMutableRawBufferPointer? { nil }
    /// With ``TLSConnection/deliversIntoSinkBuffers``: `count` bytes of plaintext are in the
    /// buffer ``tlsPlaintextBuffer()`` gave last.
    func tlsDelivered(_ count: Int) {}
    /// The peer closed its side: close_notify, or EOF without it (`closeNotify` false). The
    /// sink decides whether to close (TLS 1.2 peers expect it after close_notify).
    func tlsPeerClosed(closeNotify: Bool) {}
    /// Writes are held while OpenSSL reads a post-handshake message: `total` bytes now;
    /// `first` when holding just began.
    func tlsWritesHeld(total: Int, first: Bool) {}
    /// The held writes went out; a `writeEOF` that waited for them was carried out, and a
    /// `close` that did is `closing` (how far it got), nil if none waited.
    func tlsHeldWritesSent(closing: TLSConnection.CloseProgress?) {}
    /// close_notify went both ways (or EOF came after ours): the connection is closed; close
    /// the transport.
    func tlsClosed() {}
    /// The connection failed and is closed; whatever OpenSSL had to send (an alert) was sent.
    func tlsFailed(_ error: TLSError) {}
    /// The outermost OpenSSL call returned after ``TLSConnection/requestReturnNotice()``.
    func tlsOpenSSLReturned() {}
}
