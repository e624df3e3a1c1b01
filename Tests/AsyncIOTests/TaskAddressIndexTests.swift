//===----------------------------------------------------------------------===//
// swift-asyncio — TaskAddressIndex: the live tasks by address, against a Dictionary.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

@Suite(.timeLimit(.minutes(10)))
struct TaskAddressIndexTests {
    /// Inserts, updates and removes (removals from the middle of probe runs included: few
    /// distinct addresses, 16 bytes apart like heap objects, collide often) and checks every
    /// address against a Dictionary after each step.
    @Test func agreesWithADictionary() throws {
        var generator = TimerQueueTests.Generator(state: 0xDEAD_BEEF)
        var index = TaskAddressIndex()
        var reference: [Int: (slot: Int32, own: Bool)] = [:]
        let base = 0x7F00_0000_0000
        func address(_ key: Int) -> UnsafeRawPointer {
            // SAFETY: never dereferenced; a key only.
            UnsafeRawPointer(bitPattern: base + key * 16)!
        }
        for step in 0..<20_000 {
            let key = Int(generator.next(300))
            switch generator.next(3) {
            case 0, 1:
                let slot = Int32(step), own = step % 2 == 0
                index.insert(address(key), slot: slot, own: own)
                reference[key] = (slot, own)
            default:
                index.remove(address(key))
                reference[key] = nil
            }
            try #require(index.count == reference.count)
            if step % 97 == 0 {
                for key in 0..<300 {
                    let found = index.find(address(key))
                    try #require(found?.slot == reference[key]?.slot)
                    try #require(found?.own == reference[key]?.own)
                    try #require(found == nil || found?.address == address(key))
                }
            }
        }
    }
}
