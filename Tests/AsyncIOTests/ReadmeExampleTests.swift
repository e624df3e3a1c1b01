//===----------------------------------------------------------------------===//
// swift-asyncio — the README's API example, kept compiling and correct.
//===----------------------------------------------------------------------===//

import AsyncIO
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ReadmeExampleTests {
    // The code of README.md's "A taste of the API", with print replaced by a return.
    @Test func readmeExampleRuns() throws {
        let output = try EventLoop.run { loop in
            let slow = loop.createTask(name: "slow") {
                try await sleep(for: .milliseconds(100))
                return "slow"
            }
            let fast = loop.createTask { "fast" }

            let sum = try await loop.runInExecutor { (1...1_000_000).reduce(0, +) }.value

            let future = Future<Int>(loop: loop)
            loop.callLater(after: .milliseconds(10)) { try future.setResult(sum) }
            let value = try await waitFor(future, timeout: .seconds(5))

            let (a, b) = try await gather(slow, fast)
            return "\(a) \(b) \(value)"
        }
        #expect(output == "slow fast 500000500000")
    }
}
