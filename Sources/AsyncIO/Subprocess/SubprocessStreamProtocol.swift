//===----------------------------------------------------------------------===//
// swift-asyncio — SubprocessStreamProtocol: a child's pipes as StreamReaders and a StreamWriter.
//===----------------------------------------------------------------------===//

/// The ``SubprocessProtocol`` behind ``Process`` (asyncio's `SubprocessStreamProtocol`): the
/// child's stdout and stderr pipes feed a ``StreamReader`` each, its stdin pipe is written
/// through a ``StreamWriter`` with flow control. Once the process exited and both read pipes
/// closed, it closes the transport (the stdin pipe with it).
///
/// Loop-bound: every call comes from the subprocess transport or its pipes on the loop thread.
final class SubprocessStreamProtocol: SubprocessProtocol {
    let loop: EventLoop
    private let limit: Int
    private(set) var stdin: StreamWriter?
    private(set) var stdout: StreamReader?
    private(set) var stderr: StreamReader?
    /// The stdin writer's flow control and close state (asyncio's `FlowControlMixin` part):
    /// its reader is never fed, as asyncio gives the stdin writer no reader.
    private var stdinFlow: StreamReaderProtocol?
    /// Until the process exited and its read pipes closed; released then (it holds us).
    private var transport: SubprocessTransport?
    /// The read pipes (1, 2) not closed yet.
    private var openReadPipes: Set<Int32> = []
    private var exited = false

    init(loop: EventLoop, limit: Int) {
        self.loop = loop
        self.limit = limit
    }

    func connectionMade(_ transport: SubprocessTransport) {
        self.transport = transport
        for fd: Int32 in [1, 2] {
            guard let pipe = transport.pipeTransport(fd) else { continue }
            let reader = StreamReader(loop: loop, limit: limit)
            reader.transport = pipe   // lets the reader pause the pipe when it buffers too much
            if fd == 1 { stdout = reader } else { stderr = reader }
            openReadPipes.insert(fd)
        }
        if let pipe = transport.pipeTransport(0) {
            let flow = StreamReaderProtocol(reader: StreamReader(loop: loop, limit: limit))
            flow.connectionMade(pipe)
            stdinFlow = flow
            stdin = StreamWriter(transport: pipe, protocol: flow)
        }
    }

    func pipeDataReceived(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        switch fd {
        case 1: stdout?.feed(bytes)
        case 2: stderr?.feed(bytes)
        default: break
        }
    }

    func pipeConnectionLost(_ fd: Int32, _ error: (any Error)?) {
        if fd == 0 {
            // Wakes drain() and waitClosed() on the writer; a lost write pipe is closed already.
            stdinFlow?.connectionLost(error)
            return
        }
        let reader = fd == 1 ? stdout : stderr
        reader?.transport = nil   // the pipe is gone; and the reader holds it strongly
        if let error {
            reader?.setError(error)
        } else {
            reader?.feedEOF()
        }
        openReadPipes.remove(fd)
        closeTransportIfFinished()
    }

    func processExited() {
        exited = true
        closeTransportIfFinished()
    }

    func pauseWriting() {
        stdinFlow?.pauseWriting()
    }

    func resumeWriting() {
        stdinFlow?.resumeWriting()
    }

    /// asyncio's `_maybe_close_transport`: nothing more can arrive once the process exited and
    /// its output pipes closed, so the transport closes (stdin too) and the cycle through it
    /// ends.
    private func closeTransportIfFinished() {
        guard exited, openReadPipes.isEmpty, let transport else { return }
        self.transport = nil
        transport.close()
    }
}
