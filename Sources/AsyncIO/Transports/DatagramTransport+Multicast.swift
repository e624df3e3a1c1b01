//===----------------------------------------------------------------------===//
// swift-asyncio — IP multicast on datagram endpoints: joining and leaving groups (IPv4 and
// IPv6), and the typed multicast socket options (interface, loop, TTL / hops).
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// The network interface a multicast group is joined on, or multicast datagrams leave by.
///
/// ```swift
/// try endpoint.joinMulticastGroup("239.1.2.3", interface: .name("eth0"))
/// try endpoint.setOption(.multicastInterfaceV6, .index(2))
/// ```
public enum MulticastInterface: Sendable, Hashable, CustomStringConvertible {
    /// The kernel's choice (by the routing table).
    case any
    /// The interface with this name (`"lo"`, `"eth0"`); it must exist.
    case name(String)
    /// The interface with this index (`if_nametoindex`, the `%2` of `fe80::1%2`).
    case index(UInt32)
    /// IPv4 only: the interface that owns this local IPv4 address (`"192.0.2.1"`).
    case address(String)

    /// How messages name it: `any interface`, `interface eth0`, `interface #2`, `the
    /// interface of 192.0.2.1`.
    public var description: String {
        switch self {
        case .any: "any interface"
        case .name(let name): "interface \(name)"
        case .index(let index): "interface #\(index)"
        case .address(let address): "the interface of \(address)"
        }
    }

    /// The interface's index (0 for `.any`), or a sentence saying why there is none. An
    /// `.address` has no index (IPv6 cannot choose by address; IPv4 passes the address).
    func resolvedIndex() -> Result<UInt32, SocketOption<MulticastInterface>.Rejected> {
        switch self {
        case .any:
            return .success(0)
        case .name(let name):
            let index = name.utf8.contains(0) ? 0 : if_nametoindex(name)
            guard index != 0 else { return .failure(.init(rule: "there is no network interface named '\(name)'")) }
            return .success(index)
        case .index(let index):
            var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
            guard index != 0, if_indextoname(index, &name) != nil else {
                return .failure(.init(rule: "there is no network interface with index \(index)"))
            }
            return .success(index)
        case .address(let address):
            return .failure(.init(rule: "IPv6 chooses a multicast interface by name or index, not by address (\(address))"))
        }
    }

    /// An IPv4 request naming this interface (`ip_mreqn`: an index or a local address), with
    /// `group` as its multicast address.
    func ipv4Request(group: in_addr) -> Result<ip_mreqn, SocketOption<MulticastInterface>.Rejected> {
        var request = ip_mreqn()
        request.imr_multiaddr = group
        if case .address(let address) = self {
            guard !address.utf8.contains(0), inet_pton(AF_INET, address, &request.imr_address) == 1 else {
                return .failure(.init(rule: "'\(address)' is not an IPv4 address"))
            }
            return .success(request)
        }
        return resolvedIndex().map { index in
            request.imr_ifindex = Int32(bitPattern: index)
            return request
        }
    }
}

extension SocketAddress {
    /// Whether this is a multicast group address: IPv4 224.0.0.0/4, IPv6 ff00::/8.
    public var isMulticast: Bool {
        switch storage {
        case .v4(let address): UInt32(bigEndian: address.sin_addr.s_addr) >> 28 == 0xE
        case .v6(let address): withUnsafeBytes(of: address.sin6_addr) { $0[0] == 0xFF }
        case .unix: false
        }
    }
}

// MARK: - Joining and leaving groups

extension DatagramTransport {
    /// Joins the multicast group `group` (`IP_ADD_MEMBERSHIP` / `IPV6_JOIN_GROUP`): datagrams
    /// sent to the group and the endpoint's port arrive through `datagramReceived`. Bind the
    /// endpoint to the group's port first (to the group address itself, or to `0.0.0.0` /
    /// `::`; several endpoints share a port with `reusePort: true`).
    ///
    /// ```swift
    /// let (endpoint, _) = try await loop.createDatagramEndpoint(localHost: "239.1.2.3", localPort: 5353) { … }
    /// try endpoint.joinMulticastGroup("239.1.2.3", interface: .name("eth0"))
    /// ```
    /// - Parameters:
    ///   - group: A numeric multicast address (`"239.1.2.3"`, `"ff12::1234"`; an IPv6 scope,
    ///     `"ff02::1%eth0"`, chooses the interface when `interface` is `.any`).
    ///   - interface: Where to join; `.any` lets the kernel choose by its routes. IPv6
    ///     takes a name or index only.
    /// - Throws: ``TransportError`` naming the group: `.invalidAddress` for an address that is
    ///   not numeric or not multicast, or of the other family than the endpoint (or a Unix
    ///   endpoint); `.invalidArgument` for an interface that does not exist; the kernel's
    ///   refusal otherwise (`.addressInUse`: already joined there); `.closed`.
    /// - Important: Loop-bound.
    public func joinMulticastGroup(_ group: String, interface: MulticastInterface = .any) throws(TransportError) {
        try changeMembership(Self.multicastGroup(group, join: true), interface, join: true)
    }

    /// Joins `group` (its port is ignored); see `joinMulticastGroup(_:interface:)`.
    public func joinMulticastGroup(_ group: SocketAddress, interface: MulticastInterface = .any) throws(TransportError) {
        try changeMembership(group, interface, join: true)
    }

    /// Leaves the multicast group `group` on `interface` (`IP_DROP_MEMBERSHIP` /
    /// `IPV6_LEAVE_GROUP`): its datagrams stop arriving. Closing the endpoint leaves every
    /// group it joined.
    /// - Throws: ``TransportError`` as `joinMulticastGroup(_:interface:)`;
    ///   `.addressNotAvailable` if the endpoint is not a member there.
    /// - Important: Loop-bound.
    public func leaveMulticastGroup(_ group: String, interface: MulticastInterface = .any) throws(TransportError) {
        try changeMembership(Self.multicastGroup(group, join: false), interface, join: false)
    }

    /// Leaves `group` (its port is ignored); see `leaveMulticastGroup(_:interface:)`.
    public func leaveMulticastGroup(_ group: SocketAddress, interface: MulticastInterface = .any) throws(TransportError) {
        try changeMembership(group, interface, join: false)
    }

    private static func multicastGroup(_ text: String, join: Bool) throws(TransportError) -> SocketAddress {
        do {
            return try SocketAddress(ipAddress: text, port: 0)
        } catch {
            throw TransportError(
                .invalidAddress, "cannot \(join ? "join" : "leave") multicast group '\(text)': \(error.message)",
                errno: EINVAL)
        }
    }

    private func changeMembership(_ group: SocketAddress, _ interface: MulticastInterface, join: Bool) throws(TransportError) {
        loop.assertInLoop()
        let what = "cannot \(join ? "join" : "leave") multicast group \(group.host)"
        guard fileDescriptor >= 0 else { throw TransportError(.closed, "\(what): the endpoint is closed", errno: EBADF) }
        let fd = fileDescriptor
        guard group.isMulticast else {
            throw TransportError(
                .invalidAddress,
                "\(what): not a multicast address (IPv4 groups are 224.0.0.0/4, IPv6 groups ff00::/8)", errno: EINVAL)
        }
        let family = Socket.intOption(fd, SOL_SOCKET, SO_DOMAIN)
        guard family == group.family else {
            throw TransportError(
                .invalidAddress,
                "\(what): an \(Socket.familyName(group.family)) group on an \(Socket.familyName(family)) endpoint",
                errno: EAFNOSUPPORT)
        }
        let rc: Int32
        let call: String
        switch group.storage {
        case .v4(let address):
            var request: ip_mreqn
            switch interface.ipv4Request(group: address.sin_addr) {
            case .success(let made): request = made
            case .failure(let rejected): throw TransportError(.invalidArgument, "\(what) on \(interface): \(rejected.rule)", errno: ENODEV)
            }
            call = join ? "IP_ADD_MEMBERSHIP" : "IP_DROP_MEMBERSHIP"
            rc = setsockopt(
                fd, Int32(IPPROTO_IP), join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &request,
                socklen_t(MemoryLayout<ip_mreqn>.size))
        case .v6(let address):
            var request = ipv6_mreq()
            request.ipv6mr_multiaddr = address.sin6_addr
            switch interface == .any ? .success(address.sin6_scope_id) : interface.resolvedIndex() {
            case .success(let index): request.ipv6mr_interface = index
            case .failure(let rejected): throw TransportError(.invalidArgument, "\(what) on \(interface): \(rejected.rule)", errno: ENODEV)
            }
            call = join ? "IPV6_JOIN_GROUP" : "IPV6_LEAVE_GROUP"
            rc = setsockopt(
                fd, Int32(IPPROTO_IPV6), join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP, &request,
                socklen_t(MemoryLayout<ipv6_mreq>.size))
        case .unix:
            rc = 0   // not multicast: refused above
            call = ""
        }
        if rc != 0 {
            let code = errno
            let error = TransportError(errno: code, syscall: "setsockopt \(call)")
            throw TransportError(error.code, "\(what) on \(interface): \(error.message)", errno: code)
        }
    }
}

// MARK: - The options

extension SocketOption where Value == Bool {
    /// `IP_MULTICAST_LOOP` (IPv4): whether the endpoint's own multicast datagrams come back to
    /// this host's members of the group, itself included (on by default).
    public static var multicastLoop: Self {
        flag(Int32(IPPROTO_IP), IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP").onlyFor(family: AF_INET)
    }
    /// `IPV6_MULTICAST_LOOP`: IPv6's ``multicastLoop`` (on by default).
    public static var multicastLoopV6: Self {
        flag(Int32(IPPROTO_IPV6), IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP").onlyFor(family: AF_INET6)
    }
    /// `IP_MULTICAST_ALL` (IPv4): on (Linux's default), a socket bound to a port receives the
    /// datagrams of every group that any socket on this host joined on that port, not only of
    /// the groups it joined itself; off, only its own groups' (and a group it left stops
    /// arriving even while another socket is still a member).
    public static var multicastAll: Self {
        flag(Int32(IPPROTO_IP), IP_MULTICAST_ALL, "IP_MULTICAST_ALL").onlyFor(family: AF_INET)
    }
    /// `IPV6_MULTICAST_ALL`: IPv6's ``multicastAll`` (on by default).
    public static var multicastAllV6: Self {
        flag(Int32(IPPROTO_IPV6), IPV6_MULTICAST_ALL, "IPV6_MULTICAST_ALL").onlyFor(family: AF_INET6)
    }
}

extension SocketOption where Value == Int {
    /// `IP_MULTICAST_TTL` (IPv4): how many routers the endpoint's multicast datagrams may
    /// cross, 0...255 (default 1: the local network only; 0: this host only; -1 sets the
    /// default).
    public static var multicastTTL: Self {
        integer(Int32(IPPROTO_IP), IP_MULTICAST_TTL, "IP_MULTICAST_TTL").onlyFor(family: AF_INET)
    }
    /// `IPV6_MULTICAST_HOPS`: IPv6's ``multicastTTL``, 0...255 (default 1; -1 sets the
    /// default).
    public static var multicastHops: Self {
        integer(Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS").onlyFor(family: AF_INET6)
    }
}

extension SocketOption where Value == MulticastInterface {
    /// `IP_MULTICAST_IF` (IPv4): the interface the endpoint's multicast datagrams leave by,
    /// by name, index or local address (`ip_mreqn`); `.any`: the kernel's route.
    ///
    /// Reading it back gives what Linux reports: the address set with `.address`, or `.any`
    /// when none was set (an interface chosen by name or index reads back as `.any`).
    public static var multicastInterface: Self {
        Self(
            level: Int32(IPPROTO_IP), name: IP_MULTICAST_IF, optionName: "IP_MULTICAST_IF",
            encode: { interface in
                interface.ipv4Request(group: in_addr()).map { request in
                    withUnsafeBytes(of: request) { Array($0) }
                }
            },
            decode: { bytes in
                var address = in_addr()
                withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes.prefix(MemoryLayout<in_addr>.size)) }
                guard address.s_addr != 0 else { return .any }
                var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
                return .address(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            },
            readSize: MemoryLayout<in_addr>.size, describe: { "\($0)" }
        ).onlyFor(family: AF_INET)
    }

    /// `IPV6_MULTICAST_IF`: the interface the endpoint's IPv6 multicast datagrams leave by,
    /// by name or index; `.any`: the kernel's route. Reads back as `.index` (or `.any`).
    public static var multicastInterfaceV6: Self {
        Self(
            level: Int32(IPPROTO_IPV6), name: IPV6_MULTICAST_IF, optionName: "IPV6_MULTICAST_IF",
            encode: { interface in
                interface.resolvedIndex().map { index in withUnsafeBytes(of: Int32(bitPattern: index)) { Array($0) } }
            },
            decode: { bytes in
                var index: Int32 = 0
                withUnsafeMutableBytes(of: &index) { $0.copyBytes(from: bytes.prefix(MemoryLayout<Int32>.size)) }
                return index == 0 ? .any : .index(UInt32(bitPattern: index))
            },
            readSize: MemoryLayout<Int32>.size, describe: { "\($0)" }
        ).onlyFor(family: AF_INET6)
    }
}
