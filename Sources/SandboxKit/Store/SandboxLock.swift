import Glibc

/// The lock that serializes everything that changes a sandbox: `flock(2)` on
/// `<sandbox>/lock`. The kernel drops it when the holder dies, however it
/// dies, so a lock is never stale. While held, the file says who holds it
/// (pid, operation, since when) for the message others get.
public final class SandboxLock {
    public struct Holder: Sendable, Equatable {
        public var pid: Int32
        public var operation: String
        public var since: String
    }

    /// Exit code when the sandbox is in use: sandboxd did not run the command.
    public static let busyExitCode = ExitCode.sandboxFailed

    public let path: String
    private var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { release() }

    /// Takes the lock without waiting, for a long operation (exec, export,
    /// checkpoint...). Short holders (list and inspect repairing a record)
    /// are waited out for up to `patience` seconds; a real holder is reported
    /// at once: "sandbox NAME is in use by pid P (exec) since T".
    public static func acquire(sandbox name: String, directory: String, operation: String,
                               patience: Double = 2) throws(SandboxError) -> SandboxLock {
        let path = directory + "/lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            if errno == ENOENT { throw SandboxError("no sandbox named '\(name)'") }
            throw SandboxError("cannot open \(path): \(errnoString())")
        }
        let deadline = Clock.monotonic() + patience
        let finishDeadline = Clock.monotonic() + finishPatience
        func refuse(_ message: String, exitCode: Int32 = busyExitCode) -> SandboxError {
            close(fd)
            return SandboxError(message, exitCode: exitCode)
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EINTR { continue }
            guard e == EWOULDBLOCK else { throw refuse("cannot lock \(path): \(errnoString(e))", exitCode: ExitCode.sandboxFailed) }
            let holder = readHolder(fd)
            if let h = holder, h.operation == finishing {
                // The last exec's records are being synced: a millisecond or
                // so, longer only when the disk is slow. Polled finely, as
                // the next exec of an agent's loop waits for exactly this.
                // (The pid is the exec's, which has answered; its finisher holds the lock.)
                if Clock.monotonic() >= finishDeadline {
                    throw refuse("sandbox \(name): the records of its last run (exec by pid \(h.pid)) are still being written to disk after \(Int(finishPatience)) s; the disk may be stalled. Try again later")
                }
                pause(nanoseconds: 200_000)
                continue
            }
            if let h = holder, h.pid > 0, processExists(h.pid) || Clock.monotonic() >= deadline {
                throw refuse("sandbox \(name) is in use by pid \(h.pid) (\(h.operation)) since \(h.since); wait or use another sandbox")
            }
            if Clock.monotonic() >= deadline {
                throw refuse("sandbox \(name) is in use (locked by another sandboxd); wait or use another sandbox")
            }
            pause(nanoseconds: 5_000_000)
        }
        let lock = SandboxLock(path: path, fd: fd)
        // A lock file moved away (rm renames the directory) or replaced is not ours to hold.
        var held = stat(), current = stat()
        guard fstat(fd, &held) == 0, stat(path, &current) == 0, held.st_ino == current.st_ino, held.st_dev == current.st_dev else {
            lock.release()
            throw SandboxError("no sandbox named '\(name)' (it was removed)")
        }
        lock.record(operation)
        return lock
    }

    /// Tries once, for short work that must not disturb a running exec
    /// (list and inspect marking interrupted runs). nil when held by someone.
    public static func tryAcquire(directory: String) -> SandboxLock? {
        let fd = open(directory + "/lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { close(fd); return nil }
        let lock = SandboxLock(path: directory + "/lock", fd: fd)
        lock.record("repair")  // every holder names itself: the last one's record stays in the file
        return lock
    }

    /// Who holds the lock of `directory` now, if anyone (a probe that takes and drops it).
    public static func holder(directory: String) -> Holder? {
        let fd = open(directory + "/lock", O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return readHolder(fd) ?? Holder(pid: 0, operation: "unknown", since: "")
    }

    /// Writes who holds the lock into the lock file, in place and padded to
    /// a fixed size: no truncation or new block, so taking the lock costs
    /// the journal nothing. The record is only read while the lock is held
    /// (`holder`), so a stale one left by `release` misleads nobody.
    public func record(_ operation: String) {
        var text = Array(JSON.object([("pid", .int(Int64(getpid()))), ("operation", .string(operation)), ("since", .string(Clock.iso()))])
            .rendered(pretty: false).utf8)
        if text.count < Self.recordSize - 1 { text += [UInt8](repeating: 0x20, count: Self.recordSize - 1 - text.count) }
        text.append(0x0A)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    static let recordSize = 256

    /// The holder's operation while a finisher (a process that outlives
    /// sandboxd, see `Finisher`) syncs an exec's records under the lock.
    /// Others wait for it instead of being refused: up to `finishPatience`.
    static let finishing = "finish"
    static let finishPatience = 60.0

    /// Waits while a finisher holds the lock of `directory` (for readers
    /// that do not take the lock: `info`), so that what they read is final.
    public static func awaitFinisher(directory: String) {
        let deadline = Clock.monotonic() + finishPatience
        while let h = holder(directory: directory), h.operation == finishing, Clock.monotonic() < deadline {
            pause(nanoseconds: 200_000)
        }
    }

    private static func pause(nanoseconds: Int) {
        var ts = timespec(tv_sec: 0, tv_nsec: nanoseconds)
        nanosleep(&ts, nil)
    }

    /// The locked descriptor, for a finisher to inherit.
    var descriptor: Int32 { fd }

    public func release() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    /// Drops the descriptor without unlocking or closing it: a finisher
    /// owns it now, and holds the lock until it exits.
    func forget() { fd = -1 }

    private static func readHolder(_ fd: Int32) -> Holder? {
        var buf = [UInt8](repeating: 0, count: 1024)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0, let json = try? JSONParser.parse(Array(buf[0..<n].prefix { $0 != 0x0A })),
              let pid = json["pid"]?.intValue else { return nil }
        return Holder(pid: Int32(truncatingIfNeeded: pid), operation: json["operation"]?.stringValue ?? "?",
                      since: json["since"]?.stringValue ?? "?")
    }

    static func processExists(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }
}
