//===----------------------------------------------------------------------===//
// swift-asyncio — SocketTransport: sending a file with sendfile(2) between queued writes.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

extension SocketTransport {
    /// Sends `segment` of a file after the queued bytes, with sendfile(2) (the native path of
    /// ``EventLoop/sendfile(_:file:offset:count:fallback:)``). Bytes written meanwhile are
    /// held and sent after the file. `completion` runs once on the loop with the bytes sent,
    /// `.sendfileNotAvailable` (nothing sent: the caller may fall back), or the error that
    /// closed the transport.
    func sendFile(_ segment: FileSegment, completion: @escaping (Result<Int, TransportError>) -> Void) {
        loop.assertInLoop()
        guard kind != .readPipe, acceptsWrites else {
            completion(.failure(.closedTransport))
            return
        }
        guard fileSend == nil else {
            completion(.failure(TransportError(.invalidArgument, "a sendfile is already in progress on this transport")))
            return
        }
        fileSend = FileSendOperation(segment, completion: completion)
        if writeQueue.isEmpty {
            flushQueue()
        }
    }

    /// Stops sending the file (its sender was cancelled): what was sent stays sent, the bytes
    /// written meanwhile go next. The completion is not called.
    func cancelFileSend() {
        loop.assertInLoop()
        guard fileSend != nil else { return }
        endFileSend()
        guard lifecycle != .closed else { return }
        if writeQueue.isEmpty {
            finishFlush()
        } else {
            _ = registerWriter()
        }
    }

    /// Sends more of the file (the queue before it is empty). True once the file is done and
    /// the transport still open: the queue, now holding the bytes written meanwhile, goes
    /// next. False while it waits for writability, or after a failure closed the transport.
    func continueFileSend() -> Bool {
        guard let operation = fileSend else { return true }
        let socket = fileDescriptor
        let file = operation.segment.file
        let sentBefore = operation.segment.sent
        let progress = operation.segment.send { offset, count in Glibc.sendfile(socket, file, &offset, count) }
        if let counters { counters.bytesSent &+= operation.segment.sent &- sentBefore }
        switch progress {
        case .finished:
            endFileSend()
            operation.complete(.success(operation.segment.sent))
            return lifecycle != .closed
        case .wouldBlock, .sliceUsed:
            _ = registerWriter()
            return false
        case .failed(let code) where operation.segment.sent == 0 && Self.sendfileUnsupported(code):
            // Not this file or socket (EINVAL: not a regular file, say): nothing was sent, the
            // caller falls back to reading and writing.
            endFileSend()
            operation.complete(.failure(TransportError(
                .sendfileNotAvailable, "sendfile(2) cannot send this file on this transport", errno: code)))
            return lifecycle != .closed
        case .failed(let code):
            endFileSend()
            let error = TransportError(errno: code, syscall: "sendfile", address: cachedPeer)
            operation.complete(.failure(error))
            forceClose(error)
            return false
        }
    }

    /// Forgets the file being sent; the bytes written meanwhile join the queue.
    private func endFileSend() {
        guard let operation = fileSend else { return }
        fileSend = nil
        writeQueue.append(takingAllOf: &operation.heldWrites)
    }

    /// The errnos with which sendfile(2) says it cannot do this transfer at all.
    private static func sendfileUnsupported(_ code: Int32) -> Bool {
        code == EINVAL || code == ENOSYS || code == EOPNOTSUPP
    }
}
