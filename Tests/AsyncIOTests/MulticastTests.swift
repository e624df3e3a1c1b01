//===----------------------------------------------------------------------===//
// swift-asyncio — IP multicast on datagram endpoints, against Python's socket module: both
// directions, leave, the loop option, TTL / hops read back (and seen by Python), and the
// typed errors.
//
// Where multicast can run: Linux's `lo` has no MULTICAST flag. IPv4 multicast still works
// on it when the interface is chosen (IP_MULTICAST_IF / the join's interface), but a
// datagram sent on lo always comes back in, so IP_MULTICAST_LOOP cannot be seen there; IPv6
// multicast does not work on lo at all (the kernel turns a route through the loopback device
// into a reject route). The full scenario therefore runs, for both families, inside a
// private network namespace the test makes on a thread of its own (unshare(CLONE_NEWNET):
// nothing of the host changes) with a veth pair: the kernel's multicast loopback copy is
// then the only way back, as on a real network. That needs root and iproute2's `ip`; without
// them the namespace tests are skipped saying so, and the lo test still runs.
//===----------------------------------------------------------------------===//

import Testing

@testable import AsyncIO

#if canImport(Glibc)
import Glibc
#endif

/// A private network namespace for one thread: the namespace lives as long as the thread,
/// so the host's interfaces are never touched.
enum PrivateNetwork {
    static let ipTool: String? = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { access($0, X_OK) == 0 }

    /// Why a namespace cannot be made here, `nil` if it can (checked once, on a throwaway
    /// thread).
    static let unavailableReason: String? = {
        if geteuid() != 0 { return "needs root to make a private network namespace" }
        if ipTool == nil { return "needs iproute2's `ip` to set up the namespace's interfaces" }
        let result = Box<Int32>(-1)
        OSThread.spawn(name: "netns-probe") { result.value = unshareNetwork() }.join()
        return result.value == 0 ? nil : "unshare(CLONE_NEWNET) failed (errno \(result.value)): no network namespaces"
    }()

    /// Runs `body` on a new thread moved into a fresh network namespace, and returns what it
    /// returned. Sockets made and processes started on that thread live in the namespace.
    static func run<T>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let result = Box<Result<T, any Error>?>(nil)
        OSThread.spawn(name: "netns-test") {
            let code = unshareNetwork()
            guard code == 0 else {
                result.value = .failure(TransportError(.other, "unshare(CLONE_NEWNET) failed", errno: code))
                return
            }
            result.value = Result { try body() }
        }.join()
        return try result.value!.get()
    }

    /// Runs `ip arguments…` (in the calling thread's namespace); throws with its stderr if it
    /// fails.
    static func ip(_ loop: EventLoop, _ arguments: String...) async throws {
        let process = try await loop.createSubprocessExec(ipTool ?? "ip", arguments, stdout: .devNull, stderr: .pipe)
        let output = try await process.communicate()
        let code = try await process.wait()
        if code != 0 {
            throw TransportError(.other, "ip \(arguments.joined(separator: " ")): \(String(decoding: output.stderr, as: UTF8.self))")
        }
    }

    /// unshare(CLONE_NEWNET) for the calling thread: 0, or the errno. (Glibc's module hides
    /// `unshare`, a _GNU_SOURCE call.)
    private static func unshareNetwork() -> Int32 {
        guard let symbol = dlsym(nil, "unshare") else { return ENOSYS }
        let call = unsafeBitCast(symbol, to: (@convention(c) (Int32) -> Int32).self)
        return call(0x4000_0000) == 0 ? 0 : errno   // CLONE_NEWNET
    }
}

/// One family's multicast setting: the group, where to bind, which interface, the options.
struct MulticastCase: Sendable {
    let family: String               // "4" or "6", for the Python peer
    let group: String
    let bindHost: String
    let interfaceName: String
    /// What our endpoint sends by, and what reading the option back gives.
    let sendInterface: MulticastInterface
    let sendInterfaceReadBack: MulticastInterface
    /// The source address datagrams from this host carry.
    let sourceHost: String
    let interfaceOption: SocketOption<MulticastInterface>
    let loopOption: SocketOption<Bool>
    let ttlOption: SocketOption<Int>
    let allOption: SocketOption<Bool>
    /// Whether a datagram sent with the loop option off stays off this host (not on lo).
    let loopIsObservable: Bool

    static func v4(interface: String, sendBy: MulticastInterface, readBack: MulticastInterface, source: String, loopIsObservable: Bool) -> Self {
        MulticastCase(
            family: "4", group: "239.255.\(UInt8.random(in: 1...254)).\(UInt8.random(in: 1...254))",
            bindHost: "", interfaceName: interface, sendInterface: sendBy, sendInterfaceReadBack: readBack,
            sourceHost: source, interfaceOption: .multicastInterface, loopOption: .multicastLoop,
            ttlOption: .multicastTTL, allOption: .multicastAll, loopIsObservable: loopIsObservable)
    }
}

/// The Python peer: binds, joins `group` on the interface (IPv4: sends by the interface of the
/// address in argv[5]), then follows commands on stdin:
/// `send TEXT` (to the group and our port), `recv` (prints `got TEXT HOST PORT [TTL]`: the
/// datagram, its source, and the TTL / hop limit it arrived with), `quit`.
private let pythonMulticastPeer = """
    import socket, struct, sys
    family, group, port, ifname = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    index = socket.if_nametoindex(ifname)
    if family == "4":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((group, 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     struct.pack("4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"), index))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[5]))
        s.setsockopt(socket.IPPROTO_IP, 12, 1)   # IP_RECVTTL
        destination = (group, port)
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::", 0))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                     socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        destination = (group, port, 0, index)
    s.settimeout(30)
    print("ready", s.getsockname()[1], flush=True)
    for line in sys.stdin:
        command, _, text = line.strip().partition(" ")
        if command == "send":
            s.sendto(text.encode(), destination)
        elif command == "recv":
            data, ancillary, _, source = s.recvmsg(65536, 1024)
            ttl = [int.from_bytes(d[:4], sys.byteorder) for (_, _, d) in ancillary]
            print("got", data.decode(), source[0], source[1], ttl, flush=True)
        else:
            break
    """

extension DatagramRecorder {
    /// Waits until `count` datagrams and errors arrived in all (10 s at most for each).
    func waitForCount(_ count: Int) async throws {
        while datagrams.count + errors.count < count { try await waitForNext() }
    }
}

/// Whether a datagram is waiting in `fd`'s receive queue.
private func hasQueuedDatagram(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) >= 0
}

/// The scenario, on the calling thread's loop: two endpoints of ours (A, B) on one port
/// (reusePort) joined to the group, and a Python peer joined too. Returns what was seen, one
/// line per observation, and the expected lines, built from what Python and the kernel
/// reported independently (ports) and what the scenario did.
private func runMulticastScenario(_ loop: EventLoop, _ setup: MulticastCase) async throws -> (seen: [String], expected: [String]) {
    var seen: [String] = []
    var expected: [String] = []
    let bindHost = setup.bindHost.isEmpty ? setup.group : setup.bindHost
    let (a, recorderA) = try await loop.createDatagramEndpoint(localHost: bindHost, localPort: 0, reusePort: true) {
        DatagramRecorder(loop: loop)
    }
    defer { a.close() }
    guard let port = a.localAddress?.port else { throw TransportError(.other, "no local port") }
    let (b, recorderB) = try await loop.createDatagramEndpoint(localHost: bindHost, localPort: port, reusePort: true) {
        DatagramRecorder(loop: loop)
    }
    defer { b.close() }
    let index = if_nametoindex(setup.interfaceName)
    try a.joinMulticastGroup(setup.group, interface: .name(setup.interfaceName))
    try b.joinMulticastGroup(try SocketAddress(ipAddress: setup.group, port: 0), interface: .index(index))
    try a.setOption(setup.interfaceOption, setup.sendInterface)
    seen.append("interface \(try a.option(setup.interfaceOption))")
    // `.name(x)` stands for the index the namespace gave x.
    if case .name(let name) = setup.sendInterfaceReadBack {
        expected.append("interface \(MulticastInterface.index(if_nametoindex(name)))")
    } else {
        expected.append("interface \(setup.sendInterfaceReadBack)")
    }
    try a.setOption(setup.ttlOption, 3)
    seen.append("ttl \(try a.option(setup.ttlOption)) kernel \(kernelInt(a.fileDescriptor, setup.ttlOption.level, setup.ttlOption.name) ?? -1)")
    expected.append("ttl 3 kernel 3")

    let python = try await loop.createSubprocessExec(
        "python3", ["-c", pythonMulticastPeer, setup.family, setup.group, String(port), setup.interfaceName,
            setup.sourceHost],
        stdin: .pipe, stdout: .pipe, stderr: .pipe)
    guard let toPython = python.stdin, let fromPython = python.stdout else { throw TransportError(.other, "no pipes") }
    let ready = String(decoding: try await fromPython.readLine(), as: UTF8.self)
    guard ready.hasPrefix("ready "), let pythonPort = Int(ready.dropFirst(6).dropLast()) else {
        _ = try await finishPython(python)
        throw TransportError(.other, "the Python peer said: \(ready)")
    }
    let pythonAddress = try SocketAddress(ipAddress: setup.sourceHost, port: pythonPort)

    // Python → the group: both of ours get it, exactly, from Python's address.
    toPython.write("send from-python\n")
    try await recorderA.waitForCount(1)
    try await recorderB.waitForCount(1)
    for (name, recorder) in [("A", recorderA), ("B", recorderB)] {
        seen.append("\(name) <- \(String(decoding: recorder.datagrams[0].0, as: UTF8.self)) from \(recorder.datagrams[0].1)")
        expected.append("\(name) <- from-python from \(pythonAddress)")
    }

    // Ours → the group at Python's port: Python gets it from our port, with our TTL.
    toPython.write("recv\n")
    a.sendTo("from-swift", try SocketAddress(ipAddress: setup.group, port: pythonPort))
    seen.append(String(decoding: try await fromPython.readLine(), as: UTF8.self))
    expected.append("got from-swift \(setup.sourceHost) \(port) [3]\n")

    // Loop off: our own datagram to our own port does not come back to this host; on again,
    // the next one does (datagrams on one path arrive in order: had the first come back, it
    // would be first).
    try a.setOption(setup.loopOption, false)
    seen.append("loop \(try a.option(setup.loopOption))")
    expected.append("loop false")
    a.sendTo("not-looped", try SocketAddress(ipAddress: setup.group, port: port))
    try a.setOption(setup.loopOption, true)
    a.sendTo("looped", try SocketAddress(ipAddress: setup.group, port: port))
    try await recorderA.waitForCount(2)
    try await recorderB.waitForCount(2)
    if setup.loopIsObservable {
        seen.append("A, B <- \(String(decoding: recorderA.datagrams[1].0, as: UTF8.self)), \(String(decoding: recorderB.datagrams[1].0, as: UTF8.self))")
        expected.append("A, B <- looped, looped")
    }
    try await recorderB.waitForCount(setup.loopIsObservable ? 2 : 3)
    try await recorderA.waitForCount(setup.loopIsObservable ? 2 : 3)
    let countA = recorderA.datagrams.count

    // A leaves (and takes only its own groups' datagrams): Python's next datagram reaches B
    // only; by then it would be queued at A too (one delivery fills every member's queue).
    try a.setOption(setup.allOption, false)
    try a.leaveMulticastGroup(setup.group, interface: .name(setup.interfaceName))
    toPython.write("send after-leave\n")
    try await recorderB.waitForCount(countA + 1)
    seen.append("B <- \(String(decoding: recorderB.datagrams.last?.0 ?? [], as: UTF8.self))")
    expected.append("B <- after-leave")
    seen.append("A got \(recorderA.datagrams.count - countA) more, queued \(hasQueuedDatagram(a.fileDescriptor))")
    expected.append("A got 0 more, queued false")

    // The kernel's refusals, typed.
    func attempt(_ what: String, _ body: () throws(TransportError) -> Void) {
        do {
            try body()
            seen.append("\(what): accepted")
        } catch {
            seen.append("\(what): \(error.code)")
        }
    }
    attempt("leave again") { () throws(TransportError) in try a.leaveMulticastGroup(setup.group, interface: .name(setup.interfaceName)) }
    attempt("join twice") { () throws(TransportError) in try b.joinMulticastGroup(setup.group, interface: .index(index)) }
    expected += ["leave again: addressNotAvailable", "join twice: addressInUse"]
    seen.append("errors \(recorderA.errors.count + recorderB.errors.count)")
    expected.append("errors 0")
    toPython.write("quit\n")
    _ = try await finishPython(python)
    return (seen, expected)
}

@Suite(.timeLimit(.minutes(10)))
struct MulticastTests {
    // IPv4 on the host's lo (no root needed): Python and our endpoints exchange datagrams
    // through a group joined on lo both ways, with exact bytes, sources and TTL; leaving
    // stops delivery; the kernel's refusals are typed. (The loop option cannot be seen on
    // lo: see the file's note.)
    @Test func ipv4OnLoopbackWithPython() throws {
        let setup = MulticastCase.v4(
            interface: "lo", sendBy: .address("127.0.0.1"), readBack: .address("127.0.0.1"), source: "127.0.0.1",
            loopIsObservable: false)
        let result = try withLoop { loop in try loop.runUntilComplete { try await runMulticastScenario(loop, setup) } }
        #expect(result.seen == result.expected)
    }

    // Defaults read back as Linux has them; every misuse throws a TransportError whose code
    // and message name what is wrong: an address that is not multicast, not numeric, or of
    // the other family (a Unix endpoint too), an interface that does not exist (by name, by
    // index), an IPv6 interface by address, an option of the other family, a TTL out of
    // range, a closed endpoint.
    @Test func defaultsAndTypedErrors() throws {
        try withLoop { loop in
            try loop.runUntilComplete {
                func failure(_ body: () throws -> Void) -> String {
                    do {
                        try body()
                        return "accepted"
                    } catch let error as TransportError {
                        return "\(error.code): \(error.message)"
                    } catch {
                        return "\(error)"
                    }
                }
                let (v4, _) = try await loop.createDatagramEndpoint(localHost: "127.0.0.1", localPort: 0) { DatagramRecorder(loop: loop) }
                let (v6, _) = try await loop.createDatagramEndpoint(localHost: "::1", localPort: 0) { DatagramRecorder(loop: loop) }
                defer { v6.close() }
                let (unix, _) = try await loop.createUnixDatagramEndpoint(localPath: "\u{0}swift-asyncio-mc-\(getpid())") {
                    DatagramRecorder(loop: loop)
                }
                defer { unix.close() }

                #expect(try v4.option(.multicastLoop) == true)
                #expect(try v4.option(.multicastTTL) == 1)
                #expect(try v4.option(.multicastInterface) == .any)
                #expect(try v4.option(.multicastAll) == true)
                #expect(try v6.option(.multicastLoopV6) == true)
                #expect(try v6.option(.multicastHops) == 1)
                #expect(try v6.option(.multicastInterfaceV6) == .any)
                try v6.setOption(.multicastInterfaceV6, .name("lo"))
                #expect(try v6.option(.multicastInterfaceV6) == .index(if_nametoindex("lo")))
                #expect(kernelInt(v6.fileDescriptor, Int32(IPPROTO_IPV6), IPV6_MULTICAST_IF) == Int32(if_nametoindex("lo")))
                try v4.setOption(.multicastTTL, 255)
                #expect(kernelInt(v4.fileDescriptor, Int32(IPPROTO_IP), IP_MULTICAST_TTL) == 255)
                try v6.setOption(.multicastHops, 0)
                #expect(try v6.option(.multicastHops) == 0)

                #expect(failure { try v4.joinMulticastGroup("127.0.0.1") }
                    == "invalidAddress: cannot join multicast group 127.0.0.1: not a multicast address (IPv4 groups are 224.0.0.0/4, IPv6 groups ff00::/8)")
                #expect(failure { try v4.leaveMulticastGroup("not-an-ip") }
                    == "invalidAddress: cannot leave multicast group 'not-an-ip': not a numeric IP address")
                #expect(failure { try v4.joinMulticastGroup("ff15::1") }
                    == "invalidAddress: cannot join multicast group ff15::1: an AF_INET6 group on an AF_INET endpoint")
                #expect(failure { try v6.joinMulticastGroup(try SocketAddress(ipAddress: "239.1.2.3", port: 9)) }
                    == "invalidAddress: cannot join multicast group 239.1.2.3: an AF_INET group on an AF_INET6 endpoint")
                #expect(failure { try unix.joinMulticastGroup("239.1.2.3") }
                    == "invalidAddress: cannot join multicast group 239.1.2.3: an AF_INET group on an AF_UNIX endpoint")
                #expect(failure { try v4.joinMulticastGroup("239.1.2.3", interface: .name("nosuch0")) }
                    == "invalidArgument: cannot join multicast group 239.1.2.3 on interface nosuch0: there is no network interface named 'nosuch0'")
                #expect(failure { try v6.joinMulticastGroup("ff15::1", interface: .index(999_999)) }
                    == "invalidArgument: cannot join multicast group ff15::1 on interface #999999: there is no network interface with index 999999")
                #expect(failure { try v6.joinMulticastGroup("ff15::1", interface: .address("::1")) }
                    == "invalidArgument: cannot join multicast group ff15::1 on the interface of ::1: IPv6 chooses a multicast interface by name or index, not by address (::1)")
                #expect(failure { try v4.joinMulticastGroup("239.1.2.3", interface: .address("::1")) }
                    == "invalidArgument: cannot join multicast group 239.1.2.3 on the interface of ::1: '::1' is not an IPv4 address")
                #expect(failure { try v4.setOption(.multicastInterface, .name("nosuch0")) }
                    == "invalidArgument: cannot set IP_MULTICAST_IF to interface nosuch0: there is no network interface named 'nosuch0'")
                #expect(failure { try v4.setOption(.multicastHops, 2) }
                    == "optionNotSupported: cannot set IPV6_MULTICAST_HOPS: it is an AF_INET6 option and this is an AF_INET socket")
                #expect(failure { _ = try v6.option(.multicastLoop) }
                    == "optionNotSupported: cannot read IP_MULTICAST_LOOP: it is an AF_INET option and this is an AF_INET6 socket")
                #expect(failure { try v4.setOption(.multicastTTL, 256) }
                    == "invalidArgument: cannot set IP_MULTICAST_TTL to 256: invalid argument (setsockopt, errno 22)")
                v4.close()
                try await waitUntil("the endpoint closed") { v4.fileDescriptor < 0 }
                #expect(failure { try v4.joinMulticastGroup("239.1.2.3") }
                    == "closed: cannot join multicast group 239.1.2.3: the endpoint is closed")
            }
        }
    }

    // IPv4 in a private network namespace over a veth pair: everything above, and with
    // IP_MULTICAST_LOOP off our own datagram does not come back while on it does.
    @Test(.enabled(if: PrivateNetwork.unavailableReason == nil, "\(PrivateNetwork.unavailableReason ?? "")"))
    func ipv4InAPrivateNamespaceWithPython() throws {
        let setup = MulticastCase.v4(
            interface: "mc0", sendBy: .name("mc0"), readBack: .any, source: "198.51.100.1", loopIsObservable: true)
        let result = try runInPrivateNetwork(setup)
        #expect(result.seen == result.expected)
    }

    // IPv6 (which lo cannot carry) in a private network namespace over a veth pair: joined by
    // name and by index, sent by IPV6_MULTICAST_IF, hop limit 3 seen by Python, loop off
    // keeps our own copy away, leave stops delivery.
    @Test(.enabled(if: PrivateNetwork.unavailableReason == nil, "\(PrivateNetwork.unavailableReason ?? "")"))
    func ipv6InAPrivateNamespaceWithPython() throws {
        let setup = MulticastCase(
            family: "6", group: "ff15::7a:\(String(UInt16.random(in: 1...0xFFFE), radix: 16))", bindHost: "::",
            interfaceName: "mc0", sendInterface: .name("mc0"), sendInterfaceReadBack: .name("mc0"),
            sourceHost: "fd00:5::1", interfaceOption: .multicastInterfaceV6, loopOption: .multicastLoopV6,
            ttlOption: .multicastHops, allOption: .multicastAllV6, loopIsObservable: true)
        let result = try runInPrivateNetwork(setup)
        #expect(result.seen == result.expected)
    }
}

/// The scenario in a private network namespace with a veth pair.
private func runInPrivateNetwork(_ setup: MulticastCase) throws -> (seen: [String], expected: [String]) {
    try PrivateNetwork.run {
        try withLoop { loop in
            try loop.runUntilComplete {
                try await setUpVethPair(loop)
                return try await runMulticastScenario(loop, setup)
            }
        }
    }
}

/// In the calling thread's fresh namespace: lo up, a veth pair mc0 / mc1, both up,
/// mc0 with 198.51.100.1/24 and fd00:5::1/64 (no duplicate-address wait).
private func setUpVethPair(_ loop: EventLoop) async throws {
    try await PrivateNetwork.ip(loop, "link", "set", "lo", "up")
    try await PrivateNetwork.ip(loop, "link", "add", "mc0", "type", "veth", "peer", "name", "mc1")
    for name in ["mc0", "mc1"] {
        try await PrivateNetwork.ip(loop, "link", "set", name, "addrgenmode", "none")
        try await PrivateNetwork.ip(loop, "link", "set", name, "up")
    }
    try await PrivateNetwork.ip(loop, "addr", "add", "198.51.100.1/24", "dev", "mc0")
    try await PrivateNetwork.ip(loop, "addr", "add", "fd00:5::1/64", "dev", "mc0", "nodad")
}
