//===----------------------------------------------------------------------===//
// swift-asyncio fuzzing — FuzzInput: the fuzzer's bytes, taken from the front as control
// values and from the back as data, so that a mutation of one rarely shifts the other.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// The bytes of one fuzz input, consumed as numbers and byte strings.
public struct FuzzInput {
    private let bytes: [UInt8]
    private var front: Int
    private var back: Int

    /// The input libFuzzer passed to `LLVMFuzzerTestOneInput`.
    public init(_ start: UnsafeRawPointer?, _ count: Int) {
        bytes = count > 0 && start != nil ? Array(UnsafeRawBufferPointer(start: start, count: count)) : []
        front = 0
        back = bytes.count
    }

    /// An input made of `bytes` (for replaying a case by hand).
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        front = 0
        back = bytes.count
    }

    /// Whether every byte has been consumed.
    public var isEmpty: Bool { front >= back }

    /// How many bytes are left.
    public var remaining: Int { back - front }

    /// The next control byte (0 once the input is used up).
    public mutating func byte() -> UInt8 {
        guard front < back else { return 0 }
        defer { front += 1 }
        return bytes[front]
    }

    /// A number in `0..<bound` from one or two control bytes.
    public mutating func int(below bound: Int) -> Int {
        precondition(bound > 0)
        if bound <= 256 { return Int(byte()) % bound }
        return (Int(byte()) << 8 | Int(byte())) % bound
    }

    /// A boolean from a control byte.
    public mutating func bool() -> Bool { byte() & 1 == 1 }

    /// Up to `count` bytes of data from the back.
    public mutating func data(_ count: Int) -> [UInt8] {
        let n = min(count, remaining)
        defer { back -= n }
        return Array(bytes[(back - n)..<back])
    }

    /// Everything left, as data.
    public mutating func rest() -> [UInt8] {
        defer { front = back }
        return Array(bytes[front..<back])
    }
}

/// Reports a broken invariant and aborts, so libFuzzer saves the input as a crash.
public func fuzzFailure(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    let text = "FUZZ INVARIANT BROKEN at \(file):\(line): \(message)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    abort()
}

/// Checks an invariant of the code under test.
public func fuzzCheck(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() { fuzzFailure(message(), file: file, line: line) }
}
