//===----------------------------------------------------------------------===//
// swift-asyncio — which sanitizer the tests run under (to skip what cannot run under it).
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// The sanitizer this test process was built with, detected at run time: `swift build
/// --sanitize=address|thread` links the sanitizer's runtime into the test binary (and into
/// the example executables), and the runtime exports its `__asan_init` / `__tsan_init`. Plain
/// `swift test --sanitize=…` is enough; nothing has to be passed or set.
enum Sanitizer {
    /// AddressSanitizer (with LeakSanitizer).
    static let address = isLinked("__asan_init")
    /// ThreadSanitizer.
    static let thread = isLinked("__tsan_init")
    /// Either: both inflate RSS (ASan's quarantine and shadow memory, TSan's shadow memory)
    /// and slow everything down several times.
    static var any: Bool { address || thread }

    private static func isLinked(_ symbol: String) -> Bool {
        guard let process = dlopen(nil, RTLD_NOW) else { return false }
        return dlsym(process, symbol) != nil
    }
}
