//===----------------------------------------------------------------------===//
// swift-asyncio — SocketAddress: what the address fuzzer (Fuzz/, fuzz-address) found —
// NUL bytes cutting host names and Unix paths short, IPv6 scopes lost on a round trip.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// The bytes of an address's sockaddr, as they would reach bind or connect.
private func sockaddrBytes(_ address: SocketAddress) throws -> [UInt8] {
    try address.withSockAddr { pointer, length in Array(UnsafeRawBufferPointer(start: pointer, count: Int(length))) }
}

/// An IPv6 address as the kernel writes it (getpeername, accept, recvfrom).
private func kernelIPv6(_ text: String, port: UInt16, scope: UInt32) throws -> SocketAddress {
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    address.sin6_port = port.bigEndian
    address.sin6_scope_id = scope
    #expect(inet_pton(AF_INET6, text, &address.sin6_addr) == 1)
    var storage = sockaddr_storage()
    withUnsafeMutableBytes(of: &storage) { raw in
        withUnsafeBytes(of: &address) { raw.copyMemory(from: $0) }
    }
    return try #require(SocketAddress(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in6>.size)))
}

@Suite(.timeLimit(.minutes(10)))
struct SocketAddressTests {
    // A host with a NUL byte is not a numeric address: C would read "127.0.0.1\0x" as
    // 127.0.0.1 (fuzz-address: "a host with a NUL byte was accepted as 127.0.0.1:80").
    @Test func hostWithANULByteIsNotNumeric() throws {
        let host = "127.0.0.1\u{0}x"
        #expect(throws: ResolutionError(host: host, port: 80, message: "not a numeric IP address")) {
            _ = try SocketAddress(ipAddress: host, port: 80)
        }
        #expect(!SocketAddress.isNumericHost(host))
        #expect(!SocketAddress.isNumericHost("::1\u{0}"))
        #expect(SocketAddress.isNumericHost("127.0.0.1"))
        // Nor is it looked up: getaddrinfo would resolve "localhost".
        #expect(throws: ResolutionError(host: "localhost\u{0}.example.com", port: 80, message: "host name contains a NUL byte")) {
            _ = try EventLoop.getAddrInfo(host: "localhost\u{0}.example.com", port: 80, passive: false)
        }
    }

    // A Unix path with a NUL byte is refused: the kernel would bind the path cut at the NUL
    // (fuzz-address: "the Unix path [47, 116, 109, 112, 47, 97, 0, 98] was accepted").
    @Test func unixPathWithANULByteIsRefused() throws {
        let address = SocketAddress(unixPath: "/tmp/a\u{0}b")
        #expect(throws: TransportError(.invalidAddress, "Unix socket path contains a NUL byte: [47, 116, 109, 112, 47, 97, 0, 98]")) {
            _ = try sockaddrBytes(address)
        }
        // The limits that were already there: empty, and 108 bytes (no room for the NUL).
        #expect(throws: TransportError.self) { _ = try sockaddrBytes(SocketAddress(unixPath: "")) }
        #expect(throws: TransportError.self) { _ = try sockaddrBytes(SocketAddress(unixPath: String(repeating: "a", count: 108))) }
        #expect(try sockaddrBytes(SocketAddress(unixPath: String(repeating: "a", count: 107))).count == 2 + 107 + 1)
    }

    // An IPv6 address's scope survives a round trip: the host names it (by interface name,
    // or index if the interface does not exist), it parses back, and two addresses that
    // differ only by scope are different (fuzz-address: "the kernel's [fe80::1]:8080: byte
    // 24 is 0 after a round trip, was 1").
    @Test func ipv6ScopeRoundTrips() throws {
        let kernel = try kernelIPv6("fe80::1", port: 8080, scope: 1)   // 1: the loopback interface
        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        let loopback = String(cString: try #require(if_indextoname(1, &name)))
        #expect(kernel.host == "fe80::1%\(loopback)")
        #expect(kernel.description == "[fe80::1%\(loopback)]:8080")
        let parsed = try SocketAddress(ipAddress: kernel.host, port: 8080)
        #expect(parsed == kernel)
        #expect(try sockaddrBytes(parsed) == sockaddrBytes(kernel))
        #expect(try SocketAddress(ipAddress: "fe80::1%1", port: 8080) == kernel)
        #expect(try SocketAddress(ipAddress: "fe80::1", port: 8080) != kernel)
        // An index with no interface is written as the index, and reads back.
        let unknown = try kernelIPv6("fe80::2", port: 1, scope: 4_000_000_000)
        #expect(unknown.host == "fe80::2%4000000000")
        #expect(try sockaddrBytes(SocketAddress(ipAddress: unknown.host, port: 1)) == sockaddrBytes(unknown))
        // What is not a scope.
        for host in ["fe80::1%", "fe80::1%no-such-interface", "127.0.0.1%1", "fe80::1%99999999999"] {
            #expect(throws: ResolutionError.self, "\(host)") { _ = try SocketAddress(ipAddress: host, port: 1) }
        }
        // TLS checks a scoped address as a name (no certificate names a scope): not numeric.
        #expect(!SocketAddress.isNumericHost("fe80::1%1"))
    }
}
