//===----------------------------------------------------------------------===//
// swift-asyncio — DatagramBatch: a loop's recvmmsg / sendmmsg slots, shared by its datagram
// endpoints.
//===----------------------------------------------------------------------===//

import CAsyncIOLinux
#if canImport(Glibc)
import Glibc
#endif

/// Receive slots for recvmmsg, owned by a loop and reused by all its datagram endpoints: each
/// slot holds a whole datagram (up to 64 KiB) and its source address.
final class DatagramBatch: LoopLocal {
    static let key = LoopLocalKey<DatagramBatch>()
    static let slots = 8
    static let slotSize = 64 * 1024

    let messages: UnsafeMutablePointer<casyncio_mmsghdr>
    let addresses: UnsafeMutablePointer<sockaddr_storage>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let storage: UnsafeMutableRawPointer

    init() {
        messages = .allocate(capacity: Self.slots)
        messages.initialize(repeating: casyncio_mmsghdr(), count: Self.slots)
        addresses = .allocate(capacity: Self.slots)
        addresses.initialize(repeating: sockaddr_storage(), count: Self.slots)
        iovecs = .allocate(capacity: Self.slots)
        iovecs.initialize(repeating: iovec(), count: Self.slots)
        storage = .allocate(byteCount: Self.slots * Self.slotSize, alignment: 16)
    }

    deinit {
        messages.deallocate()
        addresses.deallocate()
        iovecs.deallocate()
        storage.deallocate()
    }

    func loopWillClose() {}

    func buffer(_ slot: Int) -> UnsafeMutableRawPointer {
        storage + slot * Self.slotSize
    }

    /// Points `slot` at an outgoing datagram; its address was copied to `addresses[slot]`
    /// (`addressLength` 0: a connected endpoint, no address).
    func prepareForSend(slot: Int, bytes: UnsafeMutableRawBufferPointer, addressLength: socklen_t) {
        readyForReceive = false
        point(slot, at: bytes.baseAddress, count: bytes.count,
              name: addressLength > 0 ? UnsafeMutableRawPointer(addresses + slot) : nil, nameLength: addressLength)
    }

    /// Points `slot`'s message at one buffer and an address (or none), with no control data.
    @inline(__always)
    private func point(
        _ slot: Int, at base: UnsafeMutableRawPointer?, count: Int,
        name: UnsafeMutableRawPointer?, nameLength: socklen_t
    ) {
        iovecs[slot] = iovec(iov_base: base, iov_len: count)
        messages[slot].msg_hdr.msg_name = name
        messages[slot].msg_hdr.msg_namelen = nameLength
        messages[slot].msg_hdr.msg_iov = iovecs + slot
        messages[slot].msg_hdr.msg_iovlen = 1
        messages[slot].msg_hdr.msg_control = nil
        messages[slot].msg_hdr.msg_controllen = 0
        messages[slot].msg_hdr.msg_flags = 0
        messages[slot].msg_len = 0
    }

    /// Whether the slots point at the receive buffers (a send repoints them).
    private var readyForReceive = false

    /// Sets the slots up for recvmmsg: fully after a send, else only the lengths the kernel
    /// overwrote.
    func prepareForReceive() {
        if readyForReceive {
            for i in 0..<Self.slots {
                messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            }
            return
        }
        readyForReceive = true
        for i in 0..<Self.slots {
            point(i, at: buffer(i), count: Self.slotSize,
                  name: UnsafeMutableRawPointer(addresses + i), nameLength: socklen_t(MemoryLayout<sockaddr_storage>.size))
        }
    }
}

extension EventLoop {
    /// The loop's datagram batch (recvmmsg/sendmmsg slots), allocated on first use.
    var datagramBatch: DatagramBatch {
        local(DatagramBatch.key) { DatagramBatch() }
    }
}
