//===----------------------------------------------------------------------===//
// swift-asyncio — createSubprocessExec / createSubprocessShell: child processes with streams.
//===----------------------------------------------------------------------===//

public import Logging

extension EventLoop {
    /// Starts `program` with `arguments` and returns it as a ``Process`` whose pipes are
    /// streams (asyncio's `create_subprocess_exec`). `program` is searched in this process's
    /// `PATH` unless it contains a slash; no shell is involved, so arguments need no quoting.
    ///
    /// ```swift
    /// let process = try await loop.createSubprocessExec("git", ["status"], stdout: .pipe)
    /// let (output, _) = try await process.communicate()
    /// guard process.returnCode == 0 else { … }
    /// ```
    /// - Parameters:
    ///   - program: The program: a path, or a name searched in `PATH`.
    ///   - arguments: Its arguments, without the program's name (`argv[1...]`).
    ///   - stdin: `.pipe` for a stream (``Process/stdin``), `.inherit` (the default, as
    ///     asyncio's `None`) for this process's own fd, `.devNull`.
    ///   - stdout: The same for ``Process/stdout``.
    ///   - stderr: The same for ``Process/stderr``; `.stdout` sends stderr wherever stdout goes.
    ///   - environment: the child's whole environment; this process's if `nil`.
    ///   - currentDirectory: the child's working directory; this process's if `nil`.
    ///   - limit: each output reader's ``StreamReader/limit`` (a pipe is no longer read while
    ///     its reader holds more than twice this).
    ///   - logger: What the process's logger extends with `pid` metadata (and its pipes' with
    ///     `fd`); `nil`: the loop's ``EventLoop/logger``.
    /// - Throws: ``TransportError`` naming the program if it cannot be started (not found,
    ///   not executable), or naming `currentDirectory` if that is missing.
    /// - Important: Call from a task running on this loop; the process is loop-bound to it.
    public func createSubprocessExec(
        _ program: String,
        _ arguments: [String] = [],
        stdin: SubprocessIO = .inherit,
        stdout: SubprocessIO = .inherit,
        stderr: SubprocessIO = .inherit,
        environment: [String: String]? = nil,
        currentDirectory: String? = nil,
        limit: Int = 64 * 1024,
        logger: Logger? = nil
    ) async throws -> Process {
        precondition(limit > 0, "createSubprocessExec needs a positive limit")
        let (transport, proto) = try await subprocessExec(
            program, arguments, stdin: stdin, stdout: stdout, stderr: stderr,
            environment: environment, currentDirectory: currentDirectory, logger: logger
        ) {
            SubprocessStreamProtocol(loop: self, limit: limit)
        }
        return Process(transport: transport, protocol: proto)
    }

    /// Runs `command` with `/bin/sh -c` and returns it as a ``Process`` (asyncio's
    /// `create_subprocess_shell`): pipelines, redirections and variables work; quote what
    /// comes from users, the shell interprets it.
    ///
    /// ```swift
    /// let process = try await loop.createSubprocessShell("ls | wc -l", stdout: .pipe)
    /// let (output, _) = try await process.communicate()
    /// ```
    /// The ``Process/returnCode`` is the shell's: 127 for a command it cannot find.
    /// - Parameters: as
    ///   ``createSubprocessExec(_:_:stdin:stdout:stderr:environment:currentDirectory:limit:logger:)``.
    /// - Throws: ``TransportError`` if `/bin/sh` cannot be started or `currentDirectory` is
    ///   missing.
    /// - Important: Call from a task running on this loop; the process is loop-bound to it.
    public func createSubprocessShell(
        _ command: String,
        stdin: SubprocessIO = .inherit,
        stdout: SubprocessIO = .inherit,
        stderr: SubprocessIO = .inherit,
        environment: [String: String]? = nil,
        currentDirectory: String? = nil,
        limit: Int = 64 * 1024,
        logger: Logger? = nil
    ) async throws -> Process {
        try await createSubprocessExec(
            "/bin/sh", ["-c", command], stdin: stdin, stdout: stdout, stderr: stderr,
            environment: environment, currentDirectory: currentDirectory, limit: limit, logger: logger)
    }
}
