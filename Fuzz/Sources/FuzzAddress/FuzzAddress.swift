//===----------------------------------------------------------------------===//
// swift-asyncio fuzzing — SocketAddress: numeric host strings with ports (IPv4, IPv6 with and
// without a scope), Unix paths (empty, over-long, with NUL bytes), and addresses as the kernel
// writes them (any bytes, any length).
//
// Checked: nothing crashes; a parse either succeeds or throws the documented error; what
// parses round-trips (host → address → host, the sockaddr bytes, the description); a Unix
// path either fits in sockaddr_un and reads back the same, or is refused with
// TransportError.invalidAddress; an address the kernel wrote reads back to the same bytes.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
import CFuzzDriver
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

@testable import AsyncIO

/// libFuzzer's entry point: one host string, Unix path or kernel address.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAddress(_ start: UnsafeRawPointer?, _ count: Int) -> Int32 {
    var input = FuzzInput(start, count)
    switch input.byte() % 3 {
    case 0: numericHost(&input)
    case 1: unixPath(&input)
    default: kernelAddress(&input)
    }
    return 0
}

/// The sockaddr bytes of an address (what would reach bind/connect).
private func sockaddrBytes(_ address: SocketAddress) -> [UInt8]? {
    try? address.withSockAddr { pointer, length in
        Array(UnsafeRawBufferPointer(start: pointer, count: Int(length)))
    }
}

private func numericHost(_ input: inout FuzzInput) {
    let port = input.int(below: 70_000) - (input.bool() ? 1000 : 0)
    let bytes = input.rest()
    let host = String(decoding: bytes, as: UTF8.self)
    let address: SocketAddress
    do {
        address = try SocketAddress(ipAddress: host, port: port)
    } catch {
        fuzzCheck(error.host == host && error.port == port, "ResolutionError names \(error.host):\(error.port)")
        if !(0...65535).contains(port) {
            fuzzCheck(error.message == "port out of range 0-65535", "port \(port): \(error.message)")
        } else {
            fuzzCheck(
                error.message == "not a numeric IP address"
                    || (error.message == "not a numeric IP address (unknown IPv6 scope)" && host.utf8.contains(UInt8(ascii: "%"))),
                "\(host): \(error.message)")
            fuzzCheck(!SocketAddress.isNumericHost(host), "\(host) refused but isNumericHost says it is numeric")
        }
        return
    }
    fuzzCheck((0...65535).contains(port), "port \(port) accepted")
    fuzzCheck(!host.utf8.contains(0), "a host with a NUL byte was accepted as \(address)")
    // A scoped IPv6 address is not numeric for TLS (it is checked as a name).
    fuzzCheck(
        SocketAddress.isNumericHost(host) != host.utf8.contains(UInt8(ascii: "%")),
        "\(host) parsed, isNumericHost says \(SocketAddress.isNumericHost(host))")
    fuzzCheck(address.port == port, "port \(String(describing: address.port)) != \(port)")
    switch address.family {
    case AF_INET:
        fuzzCheck(address.description == "\(address.host):\(port)", "description \(address.description)")
    case AF_INET6:
        fuzzCheck(address.description == "[\(address.host)]:\(port)", "description \(address.description)")
    default:
        fuzzFailure("family \(address.family) from a numeric host")
    }
    // The canonical host parses to the same address, byte for byte (the scope too).
    guard let again = try? SocketAddress(ipAddress: address.host, port: port) else {
        fuzzFailure("\(host) parsed, its host \(address.host) does not")
    }
    fuzzCheck(again == address && again.hashValue == address.hashValue, "\(host) → \(address) → \(again)")
    fuzzCheck(sockaddrBytes(again) == sockaddrBytes(address), "\(host): sockaddr bytes differ after a round trip")
    fuzzCheck(again.host == address.host, "host \(address.host) → \(again.host)")
}

private func unixPath(_ input: inout FuzzInput) {
    // Paths around the 108-byte limit are the interesting ones: repeat the data to reach it.
    let target = input.int(below: 140)
    var bytes = input.rest()
    if !bytes.isEmpty {
        while bytes.count < target { bytes += bytes }
        if target > 0 && bytes.count > target { bytes = Array(bytes[..<target]) }
    }
    let path = String(decoding: bytes, as: UTF8.self)
    let address = SocketAddress(unixPath: path)
    fuzzCheck(address.family == AF_UNIX && address.port == nil, "a Unix address has family \(address.family)")
    let utf8 = Array(path.utf8)
    // A leading NUL: an abstract name (any bytes, 108 in all, shown as "@name").
    let abstract = utf8.first == 0
    let shown = abstract ? "@" + String(path.dropFirst()) : path
    fuzzCheck(address.host == path && address.description == shown, "a Unix address reads back as \(address.host)")
    let fits = abstract ? utf8.count <= 108 : !utf8.isEmpty && utf8.count <= 107 && !utf8.contains(0)
    do {
        let back = try address.withSockAddr { pointer, length -> SocketAddress? in
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: Int(length))) }
            return SocketAddress(storage: storage, length: length)
        }
        fuzzCheck(fits, "the Unix path \(utf8) (\(utf8.count) bytes) was accepted")
        fuzzCheck(back?.host == path, "the Unix path \(utf8) reads back as \(String(describing: back.map { Array($0.host.utf8) }))")
        fuzzCheck(back == address, "the Unix address does not compare equal after a round trip")
    } catch let error as TransportError {
        fuzzCheck(!fits, "the Unix path \(utf8) was refused: \(error)")
        fuzzCheck(error.code == .invalidAddress, "the Unix path \(utf8) was refused with \(error.code)")
    } catch {
        fuzzFailure("withSockAddr threw \(error)")
    }
}

private func kernelAddress(_ input: inout FuzzInput) {
    let families: [Int32] = [AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC, AF_PACKET]
    let family = families[input.int(below: families.count)]
    let length = input.int(below: MemoryLayout<sockaddr_storage>.size + 1)
    var storage = sockaddr_storage()
    let data = input.rest()
    withUnsafeMutableBytes(of: &storage) { raw in
        data.withUnsafeBytes { bytes in
            raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix(raw.count)))
        }
    }
    storage.ss_family = sa_family_t(family)
    guard let address = SocketAddress(storage: storage, length: socklen_t(length)) else {
        fuzzCheck(![AF_INET, AF_INET6, AF_UNIX].contains(family), "family \(family) refused")
        return
    }
    _ = address.description
    _ = address.hashValue
    switch family {
    case AF_INET, AF_INET6:
        guard let port = address.port else { fuzzFailure("an IP address without a port") }
        guard let again = try? SocketAddress(ipAddress: address.host, port: port) else {
            fuzzFailure("the kernel's \(address) does not parse back")
        }
        fuzzCheck(again == address, "the kernel's \(address) parses back as \(again)")
        // What matters to the kernel: family, port, address and (IPv6) scope.
        let size = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
        let original = withUnsafeBytes(of: &storage) { Array($0[..<size]) }
        guard let bytes = sockaddrBytes(again), bytes.count == size else { fuzzFailure("no sockaddr for \(again)") }
        let significant = family == AF_INET ? Array(0..<8) : Array(0..<4) + Array(8..<28)
        for i in significant where bytes[i] != original[i] {
            fuzzFailure("the kernel's \(address): byte \(i) is \(bytes[i]) after a round trip, was \(original[i])")
        }
    case AF_UNIX:
        // Round trip where defined: a path that is valid UTF-8 and fits.
        let path = address.host
        if !path.isEmpty, let bytes = sockaddrBytes(address) {
            let again = bytes.withUnsafeBytes { raw -> SocketAddress? in
                var copy = sockaddr_storage()
                withUnsafeMutableBytes(of: &copy) { $0.copyMemory(from: raw) }
                return SocketAddress(storage: copy, length: socklen_t(bytes.count))
            }
            fuzzCheck(again?.host == path, "the kernel's Unix path does not read back")
        }
    default:
        fuzzFailure("family \(family) accepted")
    }
}

/// The executable's entry point (SwiftPM names it `FuzzAddress_main`): libFuzzer's driver.
@_cdecl("FuzzAddress_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzAddress(data.map(UnsafeRawPointer.init), size) }
}
