import Glibc

/// Small file-system and process helpers for the workspace code, on Glibc only
/// (no Foundation: sandboxd's startup time matters).
enum WorkspaceSys {
    static var errnoMessage: String { String(cString: strerror(errno)) }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The contents of a file, or nil when it cannot be read.
    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    static func readString(_ path: String) -> String? {
        read(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Writes a file through a temporary name and rename(2), so readers see the old or the new content.
    static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let tmp = "\(path).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SandboxError("cannot write \(tmp): \(errnoMessage)") }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, bytes.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                let msg = errnoMessage
                close(fd)
                unlink(tmp)
                throw SandboxError("cannot write \(tmp): \(msg)")
            }
            off += n
        }
        if fsync(fd) != 0 && errno != EINVAL {
            let msg = errnoMessage
            close(fd)
            unlink(tmp)
            throw SandboxError("cannot sync \(tmp): \(msg)")
        }
        close(fd)
        if rename(tmp, path) != 0 {
            let msg = errnoMessage
            unlink(tmp)
            throw SandboxError("cannot rename \(tmp) to \(path): \(msg)")
        }
    }

    static func writeAtomically(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
        try writeAtomically(path, Array(text.utf8), mode: mode)
    }

    /// mkdir -p.
    static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + part
            if mkdir(prefix, mode) != 0 && errno != EEXIST {
                throw SandboxError("cannot create directory \(prefix): \(errnoMessage)")
            }
        }
        if !isDirectory(path) { throw SandboxError("\(path) exists and is not a directory") }
    }

    /// rm -rf, without following symbolic links.
    static func removeTree(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw SandboxError("cannot remove \(path): \(errnoMessage)")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in try list(path) { try removeTree(path + "/" + name) }
            if rmdir(path) != 0 { throw SandboxError("cannot remove \(path): \(errnoMessage)") }
        } else if unlink(path) != 0 && errno != ENOENT {
            throw SandboxError("cannot remove \(path): \(errnoMessage)")
        }
    }

    /// Names in a directory, without "." and "..", sorted.
    static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            throw SandboxError("cannot read directory \(path): \(errnoMessage)")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func currentDirectory() -> String {
        guard let p = getcwd(nil, 0) else { return "." }
        defer { free(p) }
        return String(cString: p)
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : currentDirectory() + "/" + path
    }

    static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }

    static func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        return buf.withUnsafeMutableBufferPointer { b in
            gethostname(b.baseAddress!, b.count - 1) == 0 ? String(cString: b.baseAddress!) : "localhost"
        }
    }

    static func now() -> Int64 { Int64(time(nil)) }

    /// Whether a process with this pid exists on this machine (EPERM: it exists, owned by someone else).
    static func processAlive(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid, 0) == 0 { return true }
        return errno == EPERM
    }

    /// The start time of a process (field 22 of /proc/PID/stat, clock ticks since boot), to tell a
    /// live holder from an unrelated process that reused its pid. nil when unknown.
    static func processStartTime(_ pid: Int32) -> UInt64? {
        guard let text = readString("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    static func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var rem = timespec()
        while nanosleep(&ts, &rem) != 0 && errno == EINTR { ts = rem }
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// A random number in 0..<1 (for retry jitter).
    static func jitter() -> Double { Double.random(in: 0..<1) }
}

/// Where sandboxd keeps its state: worktrees, their metadata, run records.
///
/// `$SANDBOXD_HOME` when set; otherwise `/var/lib/sandboxd` for root and
/// `~/.local/share/sandboxd` for everyone else.
public enum StatePaths {
    /// The state directory for this process.
    public static func stateDir() -> String {
        if let home = WorkspaceSys.environment("SANDBOXD_HOME"), !home.isEmpty {
            return WorkspaceSys.absolute(home)
        }
        return defaultStateDir(uid: getuid(), home: userHome())
    }

    /// The default state directory for a user, when `$SANDBOXD_HOME` is not set.
    public static func defaultStateDir(uid: UInt32, home: String) -> String {
        uid == 0 ? "/var/lib/sandboxd" : home + "/.local/share/sandboxd"
    }

    /// `<stateDir>/worktrees`: one directory per repository (its id), holding worktrees by worker name.
    public static func worktreesDir(stateDir: String) -> String { stateDir + "/worktrees" }

    /// The invoking user's home: `$HOME`, else the password database.
    public static func userHome() -> String {
        if let h = WorkspaceSys.environment("HOME"), !h.isEmpty { return h }
        if let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir { return String(cString: dir) }
        return "/"
    }
}
