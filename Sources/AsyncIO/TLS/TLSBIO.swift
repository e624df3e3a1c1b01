//===----------------------------------------------------------------------===//
// swift-asyncio — TLSBIO: the BIO between OpenSSL and a TLSConnection.
//===----------------------------------------------------------------------===//

import CAsyncIOOpenSSL
#if canImport(Glibc)
import Glibc
#endif

extension TLSConnection {
    // MARK: - The BIO's side

    /// OpenSSL wants `count` received bytes.
    func bioRead(_ destination: UnsafeMutableRawPointer, _ count: Int) -> Int {
        let available = input.count - inputOffset
        guard available > 0, let base = input.baseAddress else { return 0 }
        let n = min(available, count)
        destination.copyMemory(from: base + inputOffset, byteCount: n)
        inputOffset += n
        return n
    }

    /// OpenSSL wrote a record.
    func bioWrite(_ bytes: UnsafeRawBufferPointer) {
        if gathering {
            flight.append(contentsOf: bytes)
        } else {
            toSink { $0.tlsSend(bytes) }
        }
    }
}

/// The BIO between OpenSSL and a ``TLSConnection``: its read side hands OpenSSL the bytes
/// being received (borrowed, no copy), its write side passes each record to the sink.
enum TLSBIO {
    nonisolated(unsafe) static let method: OpaquePointer? = makeMethod()

    private static func makeMethod() -> OpaquePointer? {
        guard let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "swift-asyncio") else {
            return nil
        }
        BIO_meth_set_write_ex(method) { bio, data, count, written in
            guard let bio, let data, let owner = BIO_get_data(bio) else { return 0 }
            casyncio_BIO_clear_retry_flags(bio)
            Unmanaged<TLSConnection>.fromOpaque(owner)._withUnsafeGuaranteedRef {
                $0.bioWrite(UnsafeRawBufferPointer(start: data, count: count))
            }
            written?.pointee = count
            return 1
        }
        BIO_meth_set_read_ex(method) { bio, data, count, read in
            guard let bio, let data, let owner = BIO_get_data(bio) else { return 0 }
            casyncio_BIO_clear_retry_flags(bio)
            let n = Unmanaged<TLSConnection>.fromOpaque(owner)._withUnsafeGuaranteedRef { $0.bioRead(data, count) }
            if n == 0 {
                casyncio_BIO_set_retry_read(bio)   // nothing yet: OpenSSL says WANT_READ
                return 0
            }
            read?.pointee = n
            return 1
        }
        BIO_meth_set_ctrl(method) { _, command, _, _ in
            switch command {
            case BIO_CTRL_FLUSH, BIO_CTRL_DUP: 1
            default: 0
            }
        }
        return method
    }
}
