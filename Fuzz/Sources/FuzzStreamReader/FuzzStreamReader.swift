//===----------------------------------------------------------------------===//
// swift-asyncio fuzzing — StreamReader: a byte stream cut into chunks, fed with feed/feedEOF
// while a task reads it with read(max:), read(into:), readExactly, readUntil (one or several
// separators) and readLine, under a limit; all of it derived from the fuzz input.
//
// A model of the reader checks every result against the stream: the bytes returned are the
// next bytes of the stream, in order, none lost or repeated; each call returns or throws
// exactly what its documentation says for what is buffered at that moment (counts, the
// limit, IncompleteReadError's partial bytes, LimitOverrunError's count, the bytes readLine
// drops after an overrun); at the end the bytes read plus those dropped are the stream.
//===----------------------------------------------------------------------===//

import AsyncIO
import CFuzzDriver
import FuzzSupport

/// The separators a readUntil draws from: short, overlapping, prefixes of each other.
private let separatorSets: [[[UInt8]]] = [
    [[0x0A]],
    [[0x0D, 0x0A]],
    [Array("ab".utf8)],
    [[0x0A], [0x0D, 0x0A]],
    [Array("xyz".utf8), Array("y".utf8)],
    [Array(";".utf8), Array("::".utf8), Array(":".utf8)],
    [[0x00]],
    [Array("aaa".utf8), Array("aa".utf8)],
    [Array("abcd".utf8), Array("bc".utf8), Array("d".utf8)],
]

/// What the harness knows: the stream, how much of it was fed, how much was read.
/// @unchecked Sendable: used on the fuzzer's one loop only.
private final class Model: @unchecked Sendable {
    let stream: [UInt8]
    let limit: Int
    var fed = 0
    var eofFed = false
    var position = 0

    init(stream: [UInt8], limit: Int) {
        self.stream = stream
        self.limit = limit
    }

    var buffered: ArraySlice<UInt8> { stream[position..<fed] }

    /// The bytes a read returned must be the next ones of the stream.
    func consume(_ bytes: [UInt8], _ what: String) {
        fuzzCheck(position + bytes.count <= fed, "\(what) returned \(bytes.count) bytes, only \(fed - position) were fed")
        fuzzCheck(
            stream[position..<(position + bytes.count)].elementsEqual(bytes),
            "\(what) returned bytes that are not the stream's next \(bytes.count) at \(position)")
        position += bytes.count
    }

    /// The length up to the end of the earliest-ending separator in what is buffered.
    func earliestEnd(_ separators: [[UInt8]]) -> Int? {
        let buffer = buffered
        var end = buffer.startIndex
        while end < buffer.endIndex {
            end += 1
            for separator in separators where end - buffer.startIndex >= separator.count {
                if buffer[(end - separator.count)..<end].elementsEqual(separator) { return end - buffer.startIndex }
            }
        }
        return nil
    }
}

/// The one loop every input runs on (made once: a loop is a few file descriptors).
nonisolated(unsafe) private var sharedLoop: EventLoop?

private func loop() -> EventLoop {
    if let sharedLoop { return sharedLoop }
    do {
        let made = try EventLoop(name: "fuzz")
        sharedLoop = made
        return made
    } catch {
        fuzzFailure("cannot make an event loop: \(error)")
    }
}

/// libFuzzer's entry point: one input, one stream read to its end.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStreamReader(_ start: UnsafeRawPointer?, _ count: Int) -> Int32 {
    var input = FuzzInput(start, count)
    let limits = [1, 2, 3, 5, 8, 16, 100, 64 * 1024]
    let limit = limits[input.int(below: limits.count)]
    // A stream longer than the input: the data repeated, so the reader's buffer compaction
    // (past 64 KiB read) and big limits are reached too.
    let repeats = input.int(below: 8) == 0 ? 1 + input.int(below: 200) : 1
    let chunkScale = repeats > 1 ? 97 : 1
    var chunks: [Int] = []
    var opCodes: [(UInt8, UInt8)] = []
    let controlCount = min(input.remaining / 2, 1 + input.int(below: 256))
    for _ in 0..<controlCount {
        chunks.append(Int(input.byte() % 40) * chunkScale)
        opCodes.append((input.byte(), input.byte()))
    }
    let unit = input.rest()
    var stream: [UInt8] = []
    stream.reserveCapacity(unit.count * repeats)
    for _ in 0..<repeats { stream.append(contentsOf: unit) }

    let loop = loop()
    let model = Model(stream: stream, limit: limit)
    let reader = StreamReader(loop: loop, limit: limit)
    // A hang (a read that never wakes) stops the loop: runUntilComplete then throws.
    let watchdog = loop.callLater(after: .seconds(10)) { loop.stop() }
    defer { watchdog.cancel() }

    // The feeder: chunk i goes in after `chunks[i] % 3` loop passes (0: with the previous one).
    var chunkIndex = 0
    func feedNext() {
        repeat {
            guard model.fed < stream.count else {
                model.eofFed = true
                reader.feedEOF()
                return
            }
            let size = chunks.isEmpty ? stream.count : max(1, chunks[chunkIndex % chunks.count])
            let end = min(stream.count, model.fed + size)
            let piece = Array(stream[model.fed..<end])
            model.fed = end   // before feed: a woken read may run inside it (it does not today)
            reader.feed(piece)
            chunkIndex += 1
        } while !chunks.isEmpty && chunks[(chunkIndex - 1) % chunks.count] % 3 == 0
        _ = loop.callSoon { feedNext() }
    }
    _ = loop.callSoon { feedNext() }

    let ops = opCodes
    do {
        _ = try loop.runUntilComplete { () async throws -> Int in
            for (op, argument) in ops {
                try await step(op, argument, reader, model)
            }
            // Whatever is left, until EOF.
            let rest = try await reader.read()
            fuzzCheck(model.eofFed, "read() returned before EOF was fed")
            model.consume(rest, "read() until EOF")
            fuzzCheck(reader.atEOF, "atEOF is false after read() until EOF")
            return 0
        }
    } catch {
        fuzzFailure("the reading task failed: \(error)")
    }
    fuzzCheck(model.position == stream.count, "read \(model.position) of \(stream.count) bytes")
    // Let the feeder's last callback run, so the next input starts on an idle loop.
    while !model.eofFed {
        do { try runOnePass(loop) } catch { fuzzFailure("the loop failed: \(error)") }
    }
    return 0
}

private func runOnePass(_ loop: EventLoop) throws {
    _ = loop.callSoon { loop.stop() }
    try loop.runForever()
}

/// One read, checked against the model.
private func step(_ op: UInt8, _ argument: UInt8, _ reader: StreamReader, _ model: Model) async throws {
    switch op % 7 {
    case 0:
        let max = Int(argument) % 300 + (argument > 250 ? 70_000 : 0)
        let bytes = try await reader.read(max: max)
        let expected = Swift.min(max, model.fed - model.position)
        fuzzCheck(
            bytes.count == expected && (expected > 0 || max == 0 || model.eofFed),
            "read(max: \(max)) returned \(bytes.count) bytes with \(model.fed - model.position) buffered")
        model.consume(bytes, "read(max:)")
    case 1:
        let size = Int(argument) % 300 + 1
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 1)
        defer { buffer.deallocate() }
        let n = try await reader.read(into: buffer)
        let expected = Swift.min(size, model.fed - model.position)
        fuzzCheck(n == expected && (n > 0 || model.eofFed), "read(into: \(size)) returned \(n) with \(expected) buffered")
        model.consume(Array(buffer[..<n]), "read(into:)")
    case 2:
        let count = Int(argument) % 300
        do {
            let bytes = try await reader.readExactly(count)
            fuzzCheck(bytes.count == count, "readExactly(\(count)) returned \(bytes.count)")
            model.consume(bytes, "readExactly")
        } catch let error as IncompleteReadError {
            fuzzCheck(model.eofFed && model.fed == model.stream.count, "IncompleteReadError before EOF")
            fuzzCheck(error.expected == count, "IncompleteReadError.expected \(String(describing: error.expected)) != \(count)")
            fuzzCheck(error.partial.count < count, "IncompleteReadError with \(error.partial.count) of \(count)")
            fuzzCheck(error.partial.count == model.fed - model.position, "IncompleteReadError did not take everything left")
            model.consume(error.partial, "readExactly's IncompleteReadError")
        }
    case 3, 4:
        let separators = separatorSets[Int(argument) % separatorSets.count]
        do {
            let bytes = op % 7 == 3 && separators.count == 1
                ? try await reader.readUntil(separators[0]) : try await reader.readUntil(anyOf: separators)
            let end = model.earliestEnd(separators)
            fuzzCheck(end == bytes.count, "readUntil returned \(bytes.count) bytes, the earliest separator ends at \(String(describing: end))")
            fuzzCheck(bytes.count <= model.limit, "readUntil returned \(bytes.count) bytes over the limit \(model.limit)")
            model.consume(bytes, "readUntil")
        } catch let error as IncompleteReadError {
            fuzzCheck(model.eofFed && model.fed == model.stream.count, "readUntil: IncompleteReadError before EOF")
            fuzzCheck(model.earliestEnd(separators) == nil, "readUntil: IncompleteReadError with a separator buffered")
            fuzzCheck(error.expected == nil, "readUntil: IncompleteReadError.expected is not nil")
            fuzzCheck(error.partial.count <= model.limit, "readUntil: IncompleteReadError over the limit")
            fuzzCheck(error.partial.count == model.fed - model.position, "readUntil: IncompleteReadError did not take all")
            model.consume(error.partial, "readUntil's IncompleteReadError")
        } catch let error as LimitOverrunError {
            // The bytes stay buffered.
            let buffered = model.fed - model.position
            fuzzCheck(error.limit == model.limit, "LimitOverrunError.limit \(error.limit) != \(model.limit)")
            if let end = model.earliestEnd(separators) {
                fuzzCheck(end > model.limit && error.consumed == end, "readUntil: overrun \(error.consumed) with a separator ending at \(end)")
            } else {
                fuzzCheck(buffered > model.limit && error.consumed == buffered, "readUntil: overrun \(error.consumed) with \(buffered) buffered")
            }
        }
    case 5:
        do {
            let line = try await reader.readLine()
            if let end = model.earliestEnd([[0x0A]]) {
                fuzzCheck(line.count == end, "readLine returned \(line.count) bytes, the line has \(end)")
            } else {
                fuzzCheck(model.eofFed && model.fed == model.stream.count, "readLine returned a partial line before EOF")
                fuzzCheck(line.count == model.fed - model.position, "readLine's last line is not all that was left")
            }
            fuzzCheck(line.count <= model.limit, "readLine returned \(line.count) bytes over the limit")
            model.consume(line, "readLine")
        } catch let error as LimitOverrunError {
            let buffered = model.fed - model.position
            let end = model.earliestEnd([[0x0A]])
            if let end {
                fuzzCheck(end > model.limit && error.consumed == end, "readLine: overrun \(error.consumed), line of \(end)")
            } else {
                fuzzCheck(buffered > model.limit && error.consumed == buffered, "readLine: overrun \(error.consumed) with \(buffered)")
            }
            // The long line is dropped: through its "\n", or everything buffered.
            model.position += end ?? buffered
        }
    default:
        // A read that cannot complete yet, cancelled: nothing may be lost.
        let task = Task(executorPreference: reader.loop) { () async throws -> [UInt8] in
            try await reader.readExactly(model.stream.count + 1)
        }
        task.cancel()
        do {
            _ = try await task.value
            fuzzFailure("a cancelled readExactly past the end returned")
        } catch is CancellationError {
        } catch let error as IncompleteReadError {
            // EOF was already there: it took the rest, as asyncio does.
            fuzzCheck(model.eofFed && model.fed == model.stream.count, "IncompleteReadError before EOF")
            model.consume(error.partial, "cancelled readExactly's IncompleteReadError")
        }
    }
}

/// The executable's entry point (SwiftPM names it `FuzzStreamReader_main`): libFuzzer's driver.
@_cdecl("FuzzStreamReader_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzStreamReader(data.map(UnsafeRawPointer.init), size) }
}
