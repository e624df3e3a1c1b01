//===----------------------------------------------------------------------===//
// swift-asyncio — FlowControl: write water marks, shared by every transport.
//===----------------------------------------------------------------------===//

/// A transport's write flow control as a value (asyncio's `_FlowControlMixin`): the water
/// marks and whether the protocol was told `pauseWriting`.
///
/// The protocol gets `pauseWriting()` once when the buffer goes strictly over the high-water
/// mark and `resumeWriting()` once when it drains to the low-water mark or below: one call per
/// crossing, never two pauses in a row. The transport asks after every change of its buffer
/// size (``needsPause(bufferSize:)`` after it grew, ``needsResume(bufferSize:)`` after it
/// shrank) and makes the call when the answer is yes.
struct FlowControl {
    /// asyncio's default high-water mark.
    static let defaultHigh = 64 * 1024

    private(set) var high = FlowControl.defaultHigh
    private(set) var low = FlowControl.defaultHigh / 4
    /// Whether the protocol was paused and not yet resumed.
    private(set) var isPaused = false

    /// Sets the water marks with asyncio's defaults: `nil` high is 4 × low if low is given,
    /// else 64 KiB; `nil` low is high / 4.
    /// - Throws: ``TransportError`` `.invalidArgument` unless `high >= low >= 0` (asyncio's
    ///   ValueError); the marks are unchanged then.
    mutating func setLimits(high: Int?, low: Int?) throws(TransportError) {
        let newHigh = high ?? (low.map { $0.multipliedReportingOverflow(by: 4).overflow ? .max : 4 * $0 } ?? Self.defaultHigh)
        let newLow = low ?? newHigh / 4
        guard newHigh >= newLow, newLow >= 0 else {
            throw TransportError(.invalidArgument, "high (\(newHigh)) must be >= low (\(newLow)) must be >= 0")
        }
        self.high = newHigh
        self.low = newLow
    }

    /// Whether the protocol must be told `pauseWriting` now (and records that it was).
    @inline(__always)
    mutating func needsPause(bufferSize: Int) -> Bool {
        guard !isPaused, bufferSize > high else { return false }
        isPaused = true
        return true
    }

    /// Whether the protocol must be told `resumeWriting` now (and records that it was).
    @inline(__always)
    mutating func needsResume(bufferSize: Int) -> Bool {
        guard isPaused, bufferSize <= low else { return false }
        isPaused = false
        return true
    }

    /// Forgets a pause without telling the protocol (the transport is gone).
    mutating func reset() {
        isPaused = false
    }
}
