//===----------------------------------------------------------------------===//
// swift-asyncio — File descriptor watchers: the loop's fd registry over the Selector.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

extension EventLoop {
    /// What the loop watches on one fd: the epoll interest, and the reader and writer
    /// callbacks. `generation` goes into the epoll token with the fd, so an event for an fd
    /// that was unregistered (and maybe reused) in the same pass is recognised and dropped.
    struct Registration {
        var generation: UInt32 = 0
        var interest: IOInterest = []
        var reader: Handle?
        var writer: Handle?
    }


    /// Calls `callback` on the loop whenever `fd` is readable (asyncio's `add_reader`),
    /// replacing an earlier reader of that fd.
    ///
    /// - Throws: ``IOError`` from epoll, e.g. EPERM for a regular file, EBADF for a closed fd;
    ///   ``EventLoopError`` if the loop is closed.
    /// - Important: Loop-bound. Remove the reader before closing the fd.
    @discardableResult
    public func addReader(_ fd: Int32, _ callback: @escaping () throws -> Void) throws -> Handle {
        try addWatcher(fd, write: false, callback)
    }

    /// Calls `callback` on the loop whenever `fd` is writable (asyncio's `add_writer`),
    /// replacing an earlier writer of that fd.
    ///
    /// - Throws: as ``addReader(_:_:)``.
    /// - Important: Loop-bound. Remove the writer before closing the fd.
    @discardableResult
    public func addWriter(_ fd: Int32, _ callback: @escaping () throws -> Void) throws -> Handle {
        try addWatcher(fd, write: true, callback)
    }

    /// Stops watching `fd` for readability. Returns whether a reader was registered.
    /// - Important: Loop-bound.
    @discardableResult
    public func removeReader(_ fd: Int32) -> Bool {
        removeWatcher(fd, write: false)
    }

    /// Stops watching `fd` for writability. Returns whether a writer was registered.
    /// - Important: Loop-bound.
    @discardableResult
    public func removeWriter(_ fd: Int32) -> Bool {
        removeWatcher(fd, write: true)
    }

    func addWatcher(_ fd: Int32, write: Bool, _ callback: @escaping () throws -> Void) throws -> Handle {
        assertInLoop()
        if isClosed { throw EventLoopError.closedError }
        guard fd >= 0 else { throw IOError(errno: EBADF, syscall: "epoll_ctl") }
        let index = Int(fd)
        if index >= registrations.count {
            registrations.append(contentsOf: repeatElement(Registration(), count: index + 1 - registrations.count))
        }
        let handle = Handle(loop: self, repeats: true, callback)
        var registration = registrations[index]
        let bit: IOInterest = write ? .write : .read
        if registration.interest.isEmpty {
            let generation = nextGeneration
            nextGeneration &+= 1
            if nextGeneration == 0 { nextGeneration = 1 }
            try selector.add(fd: fd, interest: bit, token: Self.token(fd: fd, generation: generation))
            registration = Registration(generation: generation, interest: bit)
            registrationCount += 1
        } else if !registration.interest.contains(bit) {
            let interest = registration.interest.union(bit)
            let modified = Result { () throws(IOError) in
                try selector.modify(fd: fd, interest: interest, token: Self.token(fd: fd, generation: registration.generation))
            }
            switch modified {
            case .success:
                registration.interest = interest
            case .failure(let error) where error.errno != ENOENT:
                throw error
            case .failure:
                // The fd was closed (and its number reused) without removing its watchers:
                // the kernel forgot it, so start a fresh registration.
                registration.reader?.cancel()
                registration.writer?.cancel()
                let generation = nextGeneration
                nextGeneration &+= 1
                if nextGeneration == 0 { nextGeneration = 1 }
                try selector.add(fd: fd, interest: bit, token: Self.token(fd: fd, generation: generation))
                registration = Registration(generation: generation, interest: bit)
            }
        }
        if write {
            registration.writer?.cancel()
            registration.writer = handle
        } else {
            registration.reader?.cancel()
            registration.reader = handle
        }
        registrations[index] = registration
        return handle
    }

    func removeWatcher(_ fd: Int32, write: Bool) -> Bool {
        assertInLoop()
        let index = Int(fd)
        guard fd >= 0, index < registrations.count else { return false }
        var registration = registrations[index]
        let bit: IOInterest = write ? .write : .read
        guard registration.interest.contains(bit) else { return false }
        if write {
            registration.writer?.cancel()
            registration.writer = nil
        } else {
            registration.reader?.cancel()
            registration.reader = nil
        }
        registration.interest.remove(bit)
        if registration.interest.isEmpty {
            // EBADF/ENOENT here means the fd was closed before its watcher was removed:
            // the kernel already dropped it from the epoll set.
            try? selector.remove(fd: fd)
            registration = Registration()
            registrationCount -= 1
        } else {
            try? selector.modify(
                fd: fd, interest: registration.interest,
                token: Self.token(fd: fd, generation: registration.generation))
        }
        registrations[index] = registration
        return true
    }

    @inline(__always)
    static func token(fd: Int32, generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    /// Registers an internal reader that does not count as user I/O (the signal pipe).
    func addInternalReader(_ fd: Int32, _ callback: @escaping () throws -> Void) throws {
        _ = try addWatcher(fd, write: false, callback)
    }
}
