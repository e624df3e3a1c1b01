// loop-fd-check: a test fixture, not an example. Checks in a process of its own (no test
// harness threads opening fds meanwhile) that EventLoop.close() releases every fd the loop
// opened: epoll, eventfd and the signal pipe. Prints the counts; exits 0 if they match.

import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

func openFDs() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var count = 0
    while readdir(dir) != nil { count += 1 }
    return count
}

let before = openFDs()
var during = 0
do {
    let loop = try EventLoop()
    try loop.addSignalHandler(SIGUSR2) {}
    let value = try loop.runUntilComplete(loop.runInExecutor { 42 })
    during = openFDs()
    try loop.close()
    guard value == 42 else { exit(3) }
} catch {
    print("error: \(error)")
    exit(2)
}
let after = openFDs()
print("before \(before) during \(during) after \(after)")
// The loop holds 4 fds while it runs: epoll, eventfd, and the two ends of the signal pipe.
exit(during - before == 4 && after == before ? 0 : 1)
