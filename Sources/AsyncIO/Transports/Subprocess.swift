//===----------------------------------------------------------------------===//
// swift-asyncio — Subprocesses: subprocessExec, SubprocessProtocol, SubprocessTransport.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
public import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The application's side of a child process (asyncio's `SubprocessProtocol`), called on the
/// loop's thread.
public protocol SubprocessProtocol: AnyObject {
    /// The process was started.
    func connectionMade(_ transport: SubprocessTransport) throws
    /// Bytes arrived on the child's stdout (fd 1) or stderr (fd 2). Borrowed for the call.
    func pipeDataReceived(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws
    /// One of the child's pipes closed (fd 0, 1 or 2), with the error if any.
    func pipeConnectionLost(_ fd: Int32, _ error: (any Error)?)
    /// The process exited; ``SubprocessTransport/returnCode`` is set.
    func processExited()
    /// The write buffer of the child's stdin pipe went over its high-water mark: stop
    /// producing (asyncio's `pause_writing`, which its subprocess protocols inherit).
    func pauseWriting()
    /// The stdin pipe's write buffer drained below its low-water mark: produce again.
    func resumeWriting()
}

extension SubprocessProtocol {
    /// Default: does nothing.
    public func connectionMade(_ transport: SubprocessTransport) throws {}
    /// Default: drops the bytes.
    public func pipeDataReceived(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {}
    /// Default: does nothing.
    public func pipeConnectionLost(_ fd: Int32, _ error: (any Error)?) {}
    /// Default: does nothing.
    public func processExited() {}
    /// Default: does nothing.
    public func pauseWriting() {}
    /// Default: does nothing.
    public func resumeWriting() {}
}

/// Where a child's stdin, stdout or stderr goes.
public enum SubprocessIO: Sendable, Hashable {
    /// A pipe to this process, served by a transport.
    case pipe
    /// The parent's own fd.
    case inherit
    /// `/dev/null`.
    case devNull
    /// For stderr only: wherever stdout goes.
    case stdout
}

/// A running (or finished) child process (asyncio's `SubprocessTransport`).
///
/// The child's exit is observed on the loop through a pidfd (a blocking wait never happens);
/// the process is reaped, so no zombie remains.
/// - Important: Loop-bound.
public final class SubprocessTransport: @unchecked Sendable {
    /// The loop the process is watched on.
    public let loop: EventLoop
    /// The child's process id.
    public let pid: Int32
    /// Where the process logs (a reaped-elsewhere warning): the logger given to
    /// ``EventLoop/subprocessExec(_:_:stdin:stdout:stderr:environment:currentDirectory:logger:_:)``
    /// (by default the loop's) with `pid` metadata; its pipes' transports extend it with `fd`.
    public let logger: Logger
    private var pipes: [Int32: any StreamTransport] = [:]
    private let proto: any SubprocessProtocol
    private var protocolState: ProtocolState = .connecting([])
    /// The pidfd the exit is watched through; -1 without one, or once closed.
    private(set) var pidfd: Int32 = -1
    private var exitWaiters: [Future<Int32>] = []
    private var pollTimer: Handle?
    private var selfReference: SubprocessTransport?
    /// Its slot in the loop's ``OpenResources`` while it holds an fd (-1: not a member).
    @exclusivity(unchecked) var openResourceSlot = -1

    /// The exit code, or minus the signal that ended the process (asyncio's convention);
    /// `nil` while it runs. ``unknownReturnCode`` (255) if the process was reaped by someone
    /// else, so that its status is lost.
    public private(set) var returnCode: Int32?

    /// The ``returnCode`` of a child whose status cannot be known: something else in the
    /// process reaped it first (a `waitpid` of its own, or SIGCHLD set to `SIG_IGN`), so
    /// `waitpid` fails with ECHILD. 255, as asyncio reports then; a warning is logged. Never 0:
    /// an unknown outcome is not reported as success.
    public static let unknownReturnCode: Int32 = 255

    /// What reaches the protocol: nothing before its `connectionMade` (the pipes' calls made
    /// meanwhile wait here, in order: asyncio's `_pending_calls`), nothing once
    /// ``EventLoop/subprocessExec(_:_:stdin:stdout:stderr:environment:currentDirectory:logger:_:)``
    /// gave up.
    private enum ProtocolState {
        case connecting([PendingCall])
        case connected
        case abandoned
    }

    /// A protocol call held back until `connectionMade` ran.
    private enum PendingCall {
        case data(Int32, [UInt8])
        case pipeLost(Int32, (any Error)?)
        case exited
    }

    init(loop: EventLoop, pid: Int32, protocol proto: any SubprocessProtocol, logger: Logger) {
        self.loop = loop
        self.pid = pid
        self.proto = proto
        var logger = logger
        logger[metadataKey: "pid"] = "\(pid)"
        self.logger = logger
    }

    /// The transport of the child's stdin (0, a write pipe), stdout (1) or stderr (2) if it is
    /// a pipe.
    public func pipeTransport(_ fd: Int32) -> (any StreamTransport)? {
        pipes[fd]
    }

    /// Sends `signal` to the process (nothing once it was reaped).
    public func sendSignal(_ signal: Int32) {
        guard returnCode == nil else { return }
        Glibc.kill(pid, signal)
    }

    /// Sends SIGTERM.
    public func terminate() { sendSignal(SIGTERM) }

    /// Sends SIGKILL.
    public func kill() { sendSignal(SIGKILL) }

    /// Waits until the process exited and returns ``returnCode`` (``unknownReturnCode`` if
    /// something else reaped it).
    /// - Important: Call from a task running on the loop.
    public func waitForExit() async throws -> Int32 {
        if let returnCode { return returnCode }
        let waiter = Future<Int32>(loop: loop)
        exitWaiters.append(waiter)
        return try await waiter.value
    }

    /// Closes the pipes and kills the process if it still runs (asyncio's `close`).
    public func close() {
        for pipe in pipes.values { pipe.close() }
        if returnCode == nil { kill() }
    }

    // MARK: - Internals

    /// Watches the exit, calls `connectionMade`, then the calls held back meanwhile. If it
    /// throws, call ``abandon()``.
    func start(pipes: [Int32: any StreamTransport]) throws {
        self.pipes = pipes
        selfReference = self
        loop.openResources.insert(self)
        pidfd = casyncio_pidfd_open(pid)
        if pidfd >= 0 {
            try loop.addReader(pidfd) { [unowned self] in self.reap() }
        } else {
            // No pidfd (kernel < 5.3): poll for the exit without blocking.
            pollTimer = loop.callLater(after: .milliseconds(20)) { [unowned self] in self.pollExit() }
        }
        try proto.connectionMade(self)
        guard case .connecting(let pending) = protocolState else { return }
        protocolState = .connected
        var failedPipes: Set<Int32> = []
        for call in pending {
            switch call {
            case .data(let fd, let bytes):
                guard !failedPipes.contains(fd) else { continue }
                do {
                    try bytes.withUnsafeBytes { try proto.pipeDataReceived(fd, $0) }
                } catch {
                    // As the pipe's transport does when the call throws: report, abort the pipe.
                    failedPipes.insert(fd)
                    loop.callExceptionHandler(ExceptionContext(
                        message: "error in protocol callback pipeDataReceived; the pipe is aborted",
                        error: error, source: "\(self)"))
                    pipes[fd]?.abort()
                }
            case .pipeLost(let fd, let error):
                proto.pipeConnectionLost(fd, error)
            case .exited:
                proto.processExited()
            }
        }
    }

    /// subprocessExec failed before handing the transport out: stop watching the exit and
    /// let nothing more reach the protocol (the caller kills and reaps the child).
    func abandon() {
        protocolState = .abandoned
        if pidfd >= 0 {
            loop.removeReader(pidfd)
            Glibc.close(pidfd)
            pidfd = -1
        }
        pollTimer?.cancel()
        pollTimer = nil
        selfReference = nil
        loop.openResources.remove(self)
    }

    /// From a pipe's adapter: bytes the child wrote (copied if held back).
    func pipeDataReceived(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        if case .connected = protocolState {
            try proto.pipeDataReceived(fd, bytes)
        } else {
            hold(.data(fd, Array(bytes)))
        }
    }

    /// From a pipe's adapter: the pipe closed.
    func pipeConnectionLost(_ fd: Int32, _ error: (any Error)?) {
        if case .connected = protocolState {
            proto.pipeConnectionLost(fd, error)
        } else {
            hold(.pipeLost(fd, error))
        }
    }

    /// From the stdin pipe's adapter: its flow control crossed a water mark. Nothing can be
    /// written before `connectionMade` (the transport is not handed out yet), so no pause can
    /// come earlier; one that did would be dropped with its resume.
    func pipeWritingPaused(_ paused: Bool) {
        guard case .connected = protocolState else { return }
        if paused { proto.pauseWriting() } else { proto.resumeWriting() }
    }

    private func notifyExited() {
        if case .connected = protocolState {
            proto.processExited()
        } else {
            hold(.exited)
        }
    }

    /// Queues `call` until `connectionMade` ran; drops it once abandoned.
    private func hold(_ call: PendingCall) {
        guard case .connecting(var pending) = protocolState else { return }
        protocolState = .abandoned   // lets the append below work on a unique array
        pending.append(call)
        protocolState = .connecting(pending)
    }

    private func pollExit() {
        reap()
        if returnCode == nil {
            pollTimer = loop.callLater(after: .milliseconds(20)) { [unowned self] in self.pollExit() }
        }
    }

    private func reap() {
        guard returnCode == nil else { return }
        var status: Int32 = 0
        var rc: Int32
        repeat { rc = waitpid(pid, &status, WNOHANG) } while rc < 0 && errno == EINTR
        if rc < 0 && errno == ECHILD {
            // Reaped by someone else: the status is gone (asyncio's _do_waitpid: 255 + warning).
            logger.warning(
                "child process was reaped elsewhere; its return code is unknown",
                metadata: ["pid": "\(pid)", "returnCode": "\(Self.unknownReturnCode)"])
            returnCode = Self.unknownReturnCode
        } else {
            guard rc == pid else { return }
            var decoded: Int32 = 0
            switch casyncio_wait_status(status, &decoded) {
            case 1: returnCode = decoded
            case 2: returnCode = -decoded
            default: returnCode = Self.unknownReturnCode   // neither exited nor killed: not asked for
            }
        }
        if pidfd >= 0 {
            loop.removeReader(pidfd)
            Glibc.close(pidfd)
            pidfd = -1
        }
        let code = returnCode ?? -1
        // As asyncio: the protocol hears of the exit on a later pass, after pending output.
        loop.schedule { [self] in
            notifyExited()
            let waiters = exitWaiters
            exitWaiters = []
            for waiter in waiters { waiter.complete(.success(code)) }
            selfReference = nil
            loop.openResources.remove(self)
        }
    }
}

extension SubprocessTransport: OpenResource {
    /// The loop closed while the child runs, or before its exit was reported: kill the child
    /// if it still runs and reap it (a SIGKILLed process exits at once; the wait is bounded
    /// at about a second), close the pidfd and let the transport go. No protocol call, no
    /// waiter woken: the loop is gone (asyncio drops them the same way). The pipes' transports
    /// are told on their own.
    func loopClosed() {
        protocolState = .abandoned
        pollTimer = nil
        exitWaiters = []
        if returnCode == nil {
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            var reaped = false
            for _ in 0..<100 {
                let rc = waitpid(pid, &status, WNOHANG)
                if rc == pid { reaped = true }
                if rc == pid || (rc < 0 && errno != EINTR) { break }
                if rc == 0 { usleep(10_000) }
            }
            var decoded: Int32 = 0
            switch reaped ? casyncio_wait_status(status, &decoded) : 0 {
            case 1: returnCode = decoded            // it exited on its own just before
            case 2: returnCode = -decoded
            default: returnCode = -SIGKILL
            }
        }
        if pidfd >= 0 {
            Glibc.close(pidfd)
            pidfd = -1
        }
        selfReference = nil
    }
}

/// Feeds one pipe of a child into its SubprocessTransport, which passes the calls on to the
/// SubprocessProtocol (holding them back until its `connectionMade` ran).
final class SubprocessPipeProtocol: StreamProtocol {
    let fd: Int32
    /// Held until the pipe is lost (that ends the cycle through the pipe's transport).
    private(set) var owner: SubprocessTransport?
    private var transport: (any StreamTransport)?

    init(fd: Int32, owner: SubprocessTransport) {
        self.fd = fd
        self.owner = owner
    }

    func connectionMade(_ transport: any StreamTransport) { self.transport = transport }

    func dataReceived(_ bytes: UnsafeRawBufferPointer) throws {
        try owner?.pipeDataReceived(fd, bytes)
    }

    func connectionLost(_ error: (any Error)?) {
        transport = nil
        owner?.pipeConnectionLost(fd, error)
        owner = nil
    }

    func pauseWriting() { owner?.pipeWritingPaused(true) }

    func resumeWriting() { owner?.pipeWritingPaused(false) }
}

extension EventLoop {
    /// Starts `program` with `arguments` (asyncio's `subprocess_exec`); `program` is searched
    /// in `PATH` unless it contains a slash.
    ///
    /// ```swift
    /// let (process, collector) = try await loop.subprocessExec("ls", ["-l"]) { Collector() }
    /// let status = try await process.waitForExit()
    /// ```
    /// - Parameters:
    ///   - program: The program: a path, or a name searched in `PATH`.
    ///   - arguments: Its arguments, without the program's name (`argv[1...]`).
    ///   - stdin: A pipe (served by a transport, the default), `.inherit`ed, or `/dev/null`.
    ///   - stdout: The same for stdout.
    ///   - stderr: The same for stderr; `.stdout` merges it into stdout.
    ///   - environment: the child's whole environment (passed as `envp`); the parent's if
    ///     `nil`. `program` is still searched in the parent's `PATH`.
    ///   - currentDirectory: the child's working directory; the parent's if `nil`.
    ///   - logger: What the ``SubprocessTransport/logger`` extends with `pid` metadata (and
    ///     its pipes' transports with `fd`); `nil`: the loop's ``EventLoop/logger``.
    ///   - factory: Makes the protocol that receives the child's output and exit.
    /// - Returns: The transport and the protocol, once the child was started.
    /// - Throws: ``TransportError`` naming the program if it cannot be started (not found,
    ///   not executable: `.permissionDenied`), or naming `currentDirectory` if that is what is
    ///   missing.
    /// - Important: Call from a task running on this loop.
    public func subprocessExec<P: SubprocessProtocol>(
        _ program: String,
        _ arguments: [String] = [],
        stdin: SubprocessIO = .pipe,
        stdout: SubprocessIO = .pipe,
        stderr: SubprocessIO = .pipe,
        environment: [String: String]? = nil,
        currentDirectory: String? = nil,
        logger: Logger? = nil,
        _ factory: () -> P
    ) async throws -> (SubprocessTransport, P) {
        try await subprocessExec(
            program, arguments, stdin: stdin, stdout: stdout, stderr: stderr, environment: environment,
            currentDirectory: currentDirectory, logger: logger, factory
        ) { process, target, fd, adapter in
            var pipeLogger = process.logger
            pipeLogger[metadataKey: "fd"] = "\(target)"
            if target == 0 { return try await connectWritePipe(fd, logger: pipeLogger) { adapter }.0 }
            return try await connectReadPipe(fd, logger: pipeLogger) { adapter }.0
        }
    }

    /// ``subprocessExec(_:_:stdin:stdout:stderr:environment:currentDirectory:logger:_:)`` with the
    /// step that connects each pipe's parent end (`connectPipe(process, target fd, parent end,
    /// protocol)`) given: tests inject failures there. If it throws, the parent end is still
    /// the caller's.
    func subprocessExec<P: SubprocessProtocol>(
        _ program: String,
        _ arguments: [String],
        stdin: SubprocessIO,
        stdout: SubprocessIO,
        stderr: SubprocessIO,
        environment: [String: String]?,
        currentDirectory: String?,
        logger: Logger? = nil,
        _ factory: () -> P,
        connectPipe: (SubprocessTransport, Int32, Int32, SubprocessPipeProtocol) async throws -> any StreamTransport
    ) async throws -> (SubprocessTransport, P) {
        // Pipes: [parent end, child end] per standard fd; the child's ends are dup2'ed in.
        var parentEnds: [Int32: Int32] = [:]
        var childFDs: [Int32] = [-1, -1, -1]
        var toClose: [Int32] = []
        func closeAll() { for fd in toClose { Glibc.close(fd) } }
        do {
            for (target, io) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
                switch io {
                case .inherit: childFDs[Int(target)] = -1
                case .devNull: childFDs[Int(target)] = -2
                case .stdout:
                    guard target == 2 else { throw TransportError(.other, ".stdout is only valid for stderr") }
                    childFDs[2] = -3
                case .pipe:
                    var ends: [Int32] = [0, 0]
                    _ = try retryingSyscall("pipe2") { casyncio_pipe2(&ends, O_CLOEXEC) }
                    toClose += ends
                    let (parentEnd, childEnd) = target == 0 ? (ends[1], ends[0]) : (ends[0], ends[1])
                    parentEnds[target] = parentEnd
                    childFDs[Int(target)] = childEnd
                }
            }
        } catch {
            closeAll()
            throw error
        }
        var pid: Int32 = 0
        let argv = [program] + arguments
        let env = environment.map { $0.map { "\($0.key)=\($0.value)" } }
        let rc = withCStrings(argv) { argvPointers in
            withOptionalCStrings(env) { envPointers in
                childFDs.withUnsafeBufferPointer { fds in
                    if let currentDirectory {
                        currentDirectory.withCString { casyncio_spawn(&pid, program, argvPointers, envPointers, fds.baseAddress, $0) }
                    } else {
                        casyncio_spawn(&pid, program, argvPointers, envPointers, fds.baseAddress, nil)
                    }
                }
            }
        }
        // The child has its copies; ours of the child's ends must go (or EOF never comes).
        for fd in childFDs where fd >= 0 { Glibc.close(fd) }
        guard rc == 0 else {
            for fd in parentEnds.values { Glibc.close(fd) }
            throw spawnError(program: program, currentDirectory: currentDirectory, errno: rc)
        }
        let proto = factory()
        let transport = SubprocessTransport(loop: self, pid: pid, protocol: proto, logger: logger ?? self.logger)
        var pipes: [Int32: any StreamTransport] = [:]
        var unconnected = parentEnds
        do {
            // The pipes run from here on; the transport holds their calls back until
            // connectionMade ran (in start).
            for (target, fd) in parentEnds.sorted(by: { $0.key < $1.key }) {
                let adapter = SubprocessPipeProtocol(fd: target, owner: transport)
                pipes[target] = try await connectPipe(transport, target, fd, adapter)
                unconnected[target] = nil
            }
            try transport.start(pipes: pipes)
        } catch {
            // A pipe could not be connected, the exit cannot be watched, or connectionMade
            // threw: the protocol hears nothing more, and nothing is left behind.
            transport.abandon()
            for pipe in pipes.values { pipe.abort() }
            for fd in unconnected.values { Glibc.close(fd) }
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            throw error
        }
        return (transport, proto)
    }
}

/// Why posix_spawnp failed, naming the program, or the working directory when that is what
/// is missing (the child's chdir fails with the same ENOENT as a missing program).
private func spawnError(program: String, currentDirectory: String?, errno rc: Int32) -> TransportError {
    func reason(_ code: Int32) -> String {
        strerror(code).map { String(cString: $0) }?.lowercased() ?? "errno \(code)"
    }
    if let currentDirectory, rc == ENOENT || rc == ENOTDIR || rc == EACCES {
        var info = stat()
        let problem: Int32?
        if stat(currentDirectory, &info) != 0 {
            problem = errno
        } else if info.st_mode & S_IFMT != S_IFDIR {
            problem = ENOTDIR
        } else if access(currentDirectory, X_OK) != 0 {
            problem = errno
        } else {
            problem = nil
        }
        if let problem {
            return TransportError(
                problem == EACCES ? .permissionDenied : .other,
                "cannot run '\(program)': working directory '\(currentDirectory)': \(reason(problem)) "
                    + "(posix_spawnp, errno \(rc))",
                errno: rc)
        }
    }
    return TransportError(
        rc == EACCES ? .permissionDenied : .other,
        "cannot run '\(program)': \(reason(rc)) (posix_spawnp, errno \(rc))", errno: rc)
}

/// Calls `body` with a NULL-terminated array of C strings.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

private func withOptionalCStrings<R>(
    _ strings: [String]?, _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>?) -> R
) -> R {
    guard let strings else { return body(nil) }
    return withCStrings(strings) { body($0) }
}

/// What a finished process wrote and how it ended.
public struct ProcessResult: Sendable, Hashable {
    /// ``SubprocessTransport/returnCode``: the exit code, or minus the signal.
    public let returnCode: Int32
    /// Everything the process wrote to stdout.
    public let stdout: [UInt8]
    /// Everything the process wrote to stderr.
    public let stderr: [UInt8]
}

/// Collects a child's output for ``EventLoop/runProcess(_:_:input:environment:currentDirectory:)``.
final class OutputCollector: SubprocessProtocol {
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    var openPipes: Int
    var pipesClosed: Future<Void>

    init(loop: EventLoop, pipes: Int) {
        openPipes = pipes
        pipesClosed = Future(loop: loop)
    }

    func pipeDataReceived(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        if fd == 1 { stdout.append(contentsOf: bytes) } else { stderr.append(contentsOf: bytes) }
    }

    func pipeConnectionLost(_ fd: Int32, _ error: (any Error)?) {
        guard fd != 0 else { return }
        openPipes -= 1
        if openPipes == 0 { pipesClosed.complete(.success(())) }
    }
}

extension EventLoop {
    /// Runs a command to its end (asyncio's `create_subprocess_exec` + `communicate`): writes
    /// `input` to its stdin (then closes it), collects stdout and stderr, and returns them
    /// with the return code.
    /// - Throws: ``TransportError`` naming the program if it cannot be started.
    /// - Important: Call from a task running on this loop.
    public func runProcess(
        _ program: String,
        _ arguments: [String] = [],
        input: [UInt8] = [],
        environment: [String: String]? = nil,
        currentDirectory: String? = nil
    ) async throws -> ProcessResult {
        let (process, collector) = try await subprocessExec(
            program, arguments, environment: environment, currentDirectory: currentDirectory
        ) { OutputCollector(loop: self, pipes: 2) }
        if let stdin = process.pipeTransport(0) {
            stdin.write(input)
            stdin.writeEOF()
        }
        await collector.pipesClosed.waitDone()
        let code = try await process.waitForExit()
        return ProcessResult(returnCode: code, stdout: collector.stdout, stderr: collector.stderr)
    }
}
