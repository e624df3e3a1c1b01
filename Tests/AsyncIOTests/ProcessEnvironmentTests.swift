//===----------------------------------------------------------------------===//
// swift-asyncio — Process: environment, working directory, shell and argument passing.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under /tmp (its resolved path, as the kernel's getcwd reports it);
/// removed after `body`.
private func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    var template = Array("/tmp/asyncio-process-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw TestError(id: Int(errno)) }
    let path = String(cString: made)
    defer { rmdir(path) }
    guard let resolved = realpath(path, nil) else { throw TestError(id: Int(errno)) }
    defer { free(resolved) }
    return try body(String(cString: resolved))
}

@Suite(.timeLimit(.minutes(10)))
struct ProcessEnvironmentTests {
    // The environment given is the child's whole environment (HOME is gone), and the child
    // runs in the directory given.
    @Test func shellSeesEnvironmentAndWorkingDirectory() throws {
        try withTemporaryDirectory { directory in
            try withLoop { loop in
                let (output, code) = try loop.runUntilComplete { () async throws -> ([UInt8], Int32?) in
                    let process = try await loop.createSubprocessShell(
                        "echo \"$FOO|${HOME-unset}\"; pwd", stdout: .pipe,
                        environment: ["FOO": "bar baz"], currentDirectory: directory)
                    let (output, _) = try await process.communicate()
                    return (output, process.returnCode)
                }
                #expect(String(decoding: output, as: UTF8.self) == "bar baz|unset\n\(directory)\n")
                #expect(code == 0)
            }
        }
    }

    // The same through createSubprocessExec, and through the low-level subprocessExec (here
    // via runProcess): environment as envp, working directory with posix_spawn's chdir.
    @Test func execAndLowLevelLayerSeeEnvironmentAndWorkingDirectory() throws {
        try withTemporaryDirectory { directory in
            try withLoop { loop in
                let (high, low) = try loop.runUntilComplete { () async throws -> ([UInt8], ProcessResult) in
                    let environment = ["FOO": "from-exec", "PATH": "/usr/bin:/bin"]
                    let process = try await loop.createSubprocessExec(
                        "sh", ["-c", "echo $FOO; pwd; env | sort"], stdout: .pipe,
                        environment: environment, currentDirectory: directory)
                    let (high, _) = try await process.communicate()
                    let low = try await loop.runProcess(
                        "sh", ["-c", "echo $FOO; pwd"], environment: ["FOO": "from-low-level"],
                        currentDirectory: directory)
                    return (high, low)
                }
                let lines = String(decoding: high, as: UTF8.self).split(separator: "\n").map(String.init)
                #expect(lines.prefix(2) == ["from-exec", directory])
                // What sh exports on its own (PWD, SHLVL, _) aside, only the given variables.
                let exported = Set(lines.dropFirst(2).compactMap { $0.split(separator: "=").first.map(String.init) })
                #expect(exported.isSuperset(of: ["FOO", "PATH"]))
                #expect(!exported.contains("HOME"))
                #expect(low.returnCode == 0)
                #expect(low.stdout == Array("from-low-level\n\(directory)\n".utf8))
            }
        }
    }

    // A working directory that does not exist: the error names it (not the program, which
    // exists), for both layers.
    @Test func missingWorkingDirectoryIsNamed() throws {
        try withLoop { loop in
            let messages = try loop.runUntilComplete { () async throws -> [String] in
                var messages: [String] = []
                do {
                    _ = try await loop.createSubprocessShell("true", currentDirectory: "/no/such/dir-xyz")
                } catch let error as TransportError {
                    messages.append(error.message)
                }
                do {
                    _ = try await loop.runProcess("true", currentDirectory: "/no/such/dir-xyz")
                } catch let error as TransportError {
                    messages.append(error.message)
                }
                return messages
            }
            #expect(messages.count == 2)
            for message in messages {
                #expect(message.contains("working directory '/no/such/dir-xyz'"), "\(message)")
                #expect(message.contains("no such file or directory"), "\(message)")
            }
        }
    }

    // The shell variant runs pipelines; a command the shell cannot find is its 127.
    @Test func shellRunsPipelinesAndReportsUnknownCommands() throws {
        try withLoop { loop in
            let (sorted, sortCode, missingCode, missingErrors) = try loop.runUntilComplete {
                () async throws -> ([UInt8], Int32?, Int32?, [UInt8]) in
                let sort = try await loop.createSubprocessShell(
                    "printf 'pear\\napple\\nfig\\n' | sort", stdout: .pipe)
                let (sorted, _) = try await sort.communicate()
                let missing = try await loop.createSubprocessShell(
                    "no-such-command-xyz", stdout: .pipe, stderr: .pipe)
                let (_, missingErrors) = try await missing.communicate()
                return (sorted, sort.returnCode, missing.returnCode, missingErrors)
            }
            #expect(sorted == Array("apple\nfig\npear\n".utf8))
            #expect(sortCode == 0)
            #expect(missingCode == 127)
            #expect(String(decoding: missingErrors, as: UTF8.self).contains("no-such-command-xyz"))
        }
    }

    // Arguments reach the program verbatim: no shell splits or expands them.
    @Test func execPassesArgumentsVerbatim() throws {
        try withLoop { loop in
            let output = try loop.runUntilComplete { () async throws -> [UInt8] in
                let process = try await loop.createSubprocessExec(
                    "printf", ["%s|", "a b", "'c'", "$HOME", "*", ""], stdout: .pipe)
                return try await process.communicate().stdout
            }
            #expect(output == Array("a b|'c'|$HOME|*||".utf8))
        }
    }
}
