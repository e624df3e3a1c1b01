//===----------------------------------------------------------------------===//
// swift-asyncio — Process: createSubprocessExec, stream pipes, communicate, exit codes.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// `count` bytes of `line` repeated (what `yes TEXT | head -c COUNT` prints).
private func repeatedLine(_ text: String, count: Int) -> [UInt8] {
    let line = Array((text + "\n").utf8)
    return (0..<count).map { line[$0 % line.count] }
}

@Suite(.timeLimit(.minutes(10)))
struct ProcessTests {
    // Lines written to cat's stdin come back on its stdout one by one; EOF on stdin ends it.
    @Test func echoThroughStdinAndStdout() throws {
        try withLoop { loop in
            let (first, second, rest, code, returnCode) = try loop.runUntilComplete {
                () async throws -> ([UInt8], [UInt8], [UInt8], Int32, Int32?) in
                let process = try await loop.createSubprocessExec("cat", stdin: .pipe, stdout: .pipe)
                guard let stdin = process.stdin, let stdout = process.stdout else {
                    throw TestError(id: 1)
                }
                #expect(process.stderr == nil)
                #expect(process.returnCode == nil)
                stdin.write("hello\n")
                try await stdin.drain()
                let first = try await stdout.readLine()
                stdin.write(Array("second line\n".utf8))
                try await stdin.drain()
                let second = try await stdout.readLine()
                stdin.writeEOF()
                let rest = try await stdout.read()
                let code = try await process.wait()
                return (first, second, rest, code, process.returnCode)
            }
            #expect(first == Array("hello\n".utf8))
            #expect(second == Array("second line\n".utf8))
            #expect(rest.isEmpty)
            #expect(code == 0)
            #expect(returnCode == 0)
        }
    }

    // A child that writes 10 MiB to stderr *before* 10 MiB to stdout: communicate reads both at
    // once (reading stdout to its end first would leave the child blocked on a full stderr).
    // (1 MiB under a sanitizer, still 16 times a pipe's buffer: 10 MiB took over the suite's
    // minute under AddressSanitizer on a loaded 2-core machine.)
    @Test func communicateReadsTenMiBOnStdoutAndStderrAtOnce() throws {
        let size = Sanitizer.any ? 1 << 20 : 10 << 20
        try withLoop { loop in
            let (output, errors, code) = try loop.runUntilComplete { () async throws -> ([UInt8], [UInt8], Int32?) in
                let process = try await loop.createSubprocessShell(
                    "yes err | head -c \(size) >&2; yes out | head -c \(size)",
                    stdin: .devNull, stdout: .pipe, stderr: .pipe)
                let (output, errors) = try await process.communicate()
                return (output, errors, process.returnCode)
            }
            #expect(code == 0)
            #expect(output.count == size)
            #expect(errors.count == size)
            #expect(output == repeatedLine("out", count: size))
            #expect(errors == repeatedLine("err", count: size))
        }
    }

    // 10 MiB in while `tee` sends each piece to stdout and stderr: the three pipes are served
    // together, every byte arrives on both, in order.
    @Test func communicateWritesAndReadsTenMiBOnThreePipes() throws {
        let input = (0..<(10 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 11) }
        try withLoop { loop in
            let (output, errors, code) = try loop.runUntilComplete { () async throws -> ([UInt8], [UInt8], Int32?) in
                let process = try await loop.createSubprocessExec(
                    "tee", ["/dev/stderr"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
                let (output, errors) = try await process.communicate(input: input)
                return (output, errors, process.returnCode)
            }
            #expect(code == 0)
            #expect(output.count == input.count)
            #expect(errors.count == input.count)
            #expect(output == input)
            #expect(errors == input)
        }
    }

    // stdin has flow control: after writing 4 MiB (far over the 64 KiB high-water mark) drain
    // waits until the child took enough that the buffer is back at the low-water mark.
    @Test func stdinDrainWaitsUntilTheChildTookTheBytes() throws {
        try withLoop { loop in
            let (queued, afterDrain, code) = try loop.runUntilComplete { () async throws -> (Int, Int, Int32) in
                let process = try await loop.createSubprocessExec("cat", stdin: .pipe, stdout: .devNull)
                guard let stdin = process.stdin else { throw TestError(id: 1) }
                stdin.write([UInt8](repeating: 1, count: 4 << 20))
                let queued = stdin.transport.writeBufferSize
                try await stdin.drain()
                let afterDrain = stdin.transport.writeBufferSize
                stdin.close()
                return (queued, afterDrain, try await process.wait())
            }
            #expect(queued > 64 * 1024)
            #expect(afterDrain <= 16 * 1024)
            #expect(code == 0)
        }
    }

    // communicate closes stdin even without input: cat sees EOF and exits 0.
    @Test func communicateClosesStdin() throws {
        try withLoop { loop in
            let (output, errors, code, closing) = try loop.runUntilComplete {
                () async throws -> ([UInt8], [UInt8], Int32?, Bool?) in
                let process = try await loop.createSubprocessExec("cat", stdin: .pipe, stdout: .pipe, stderr: .pipe)
                let (output, errors) = try await process.communicate()
                return (output, errors, process.returnCode, process.stdin?.isClosing)
            }
            #expect(output.isEmpty)
            #expect(errors.isEmpty)
            #expect(code == 0)
            #expect(closing == true)
        }
    }

    // A child that exits without reading its stdin: the input it never took (more than a pipe
    // holds) is dropped without an error, as asyncio ignores the broken pipe.
    @Test func communicateIgnoresAChildThatDoesNotRead() throws {
        try withLoop { loop in
            let (output, code) = try loop.runUntilComplete { () async throws -> ([UInt8], Int32?) in
                let process = try await loop.createSubprocessShell(
                    "echo done; exit 4", stdin: .pipe, stdout: .pipe)
                let (output, _) = try await process.communicate(input: [UInt8](repeating: 7, count: 4 << 20))
                return (output, process.returnCode)
            }
            #expect(output == Array("done\n".utf8))
            #expect(code == 4)
        }
    }

    // Exit codes come back as they are: 0 and 3.
    @Test(arguments: [Int32(0), 3, 125])
    func exitCode(_ status: Int32) throws {
        try withLoop { loop in
            let (waited, stored) = try loop.runUntilComplete { () async throws -> (Int32, Int32?) in
                let process = try await loop.createSubprocessExec("sh", ["-c", "exit \(status)"])
                let waited = try await process.wait()
                return (waited, process.returnCode)
            }
            #expect(waited == status)
            #expect(stored == status)
        }
    }

    // A process ended by a signal reports minus the signal: terminate → -15, kill → -9,
    // sendSignal(SIGINT) → -2. wait() and returnCode agree; returnCode is nil before.
    @Test(arguments: ["terminate", "kill", "SIGINT"])
    func signalEndsTheProcess(_ how: String) throws {
        try withLoop { loop in
            let (before, waited, stored) = try loop.runUntilComplete { () async throws -> (Int32?, Int32, Int32?) in
                let process = try await loop.createSubprocessExec("sleep", ["60"], stdin: .devNull)
                let before = process.returnCode
                switch how {
                case "terminate": process.terminate()
                case "kill": process.kill()
                default: process.sendSignal(SIGINT)
                }
                let waited = try await process.wait()
                return (before, waited, process.returnCode)
            }
            let expected = how == "terminate" ? -SIGTERM : how == "kill" ? -SIGKILL : -SIGINT
            #expect(before == nil)
            #expect(waited == expected)
            #expect(stored == expected)
            #expect(-SIGTERM == -15)
        }
    }

    // Cancelling a task in communicate ends its wait with CancellationError; the process runs
    // on until killed, and is then reaped.
    @Test func cancellingCommunicateLeavesTheProcessRunning() throws {
        try withLoop { loop in
            let (outcome, stillRunning, code) = try loop.runUntilComplete {
                () async throws -> (String, Bool, Int32) in
                let process = try await loop.createSubprocessExec(
                    "sleep", ["60"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
                let task = loop.createTask { try await process.communicate() }
                try await sleep(for: .milliseconds(50))
                task.cancel()
                var outcome = "returned"
                do {
                    _ = try await task.value
                } catch is CancellationError {
                    outcome = "cancelled"
                } catch {
                    outcome = "\(error)"
                }
                let stillRunning = process.returnCode == nil
                process.kill()
                return (outcome, stillRunning, try await process.wait())
            }
            #expect(outcome == "cancelled")
            #expect(stillRunning)
            #expect(code == -SIGKILL)
        }
    }

    // stderr: .stdout merges both into one reader; streams that are not pipes are nil, and
    // communicate returns [] for them.
    @Test func stderrIntoStdoutAndStreamsThatAreNotPipes() throws {
        try withLoop { loop in
            let (output, errors, streams) = try loop.runUntilComplete {
                () async throws -> ([UInt8], [UInt8], [Bool]) in
                let process = try await loop.createSubprocessShell(
                    "echo a; echo b >&2; echo c", stdin: .devNull, stdout: .pipe, stderr: .stdout)
                let streams = [process.stdin == nil, process.stdout == nil, process.stderr == nil]
                let (output, errors) = try await process.communicate()
                return (output, errors, streams)
            }
            #expect(output == Array("a\nb\nc\n".utf8))
            #expect(errors.isEmpty)
            #expect(streams == [true, false, true])
        }
    }

    // A program that does not exist: a TransportError that names it; no process is left.
    @Test func missingProgramIsNamed() throws {
        try withLoop { loop in
            let message = try loop.runUntilComplete { () async throws -> String? in
                do {
                    _ = try await loop.createSubprocessExec("no-such-program-xyz", ["a"], stdout: .pipe)
                    return nil
                } catch let error as TransportError {
                    return error.message
                }
            }
            #expect(message?.contains("'no-such-program-xyz'") == true)
            #expect(message?.contains("no such file") == true)
        }
    }

    // The stdout reader is an AsyncSequence of chunks that ends at EOF.
    @Test func stdoutAsAsyncSequence() throws {
        try withLoop { loop in
            let (collected, code) = try loop.runUntilComplete { () async throws -> ([UInt8], Int32) in
                let process = try await loop.createSubprocessExec(
                    "head", ["-c", "300000", "/dev/zero"], stdout: .pipe)
                var collected: [UInt8] = []
                if let stdout = process.stdout {
                    for try await chunk in stdout { collected += chunk }
                }
                return (collected, try await process.wait())
            }
            #expect(collected == [UInt8](repeating: 0, count: 300_000))
            #expect(code == 0)
        }
    }
}
