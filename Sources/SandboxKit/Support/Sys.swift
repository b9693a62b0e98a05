import Glibc

/// strerror(errno) as a String.
func errnoString(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

/// Reads a small file (procfs, cgroupfs, sysfs) in one go; nil if it cannot be opened.
func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    readSmallBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
}

/// The bytes of a file up to `limit`, or nil if it cannot be opened. Read
/// through a stack buffer: these files are mostly a few hundred bytes, and a
/// zeroed 64 KiB heap buffer per read cost more than the read.
func readSmallBytes(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { buf in
        var out = [UInt8]()
        while out.count < limit {
            let n = read(fd, buf.baseAddress, min(buf.count, limit - out.count))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[..<n])
        }
        return out
    }
}

/// Writes `data` to `path` atomically: a temporary file in the same directory,
/// fsync, rename, fsync of the directory. Readers see the old or the new file, never half.
public func writeFileAtomically(_ path: String, _ data: [UInt8], mode: mode_t = 0o644) throws(SandboxError) {
    let (tmp, fd) = try writeTemporary(for: path, data, mode: mode)
    let ok = fsync(fd) == 0
    let saved = errno
    close(fd)
    guard ok, rename(tmp, path) == 0 else {
        unlink(tmp)
        throw SandboxError("cannot write \(path): \(errnoString(ok ? errno : saved))")
    }
    let dfd = open(parentDirectory(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}

/// `data` written (not synced) to `path.tmp.PID`, the temporary name atomic
/// replacements of `path` use; its path and open descriptor.
func writeTemporary(for path: String, _ data: [UInt8], mode: mode_t) throws(SandboxError) -> (path: String, fd: Int32) {
    let tmp = "\(path).tmp.\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw SandboxError("cannot create \(tmp): \(errnoString())") }
    guard data.withUnsafeBytes({ FileSys.writeAll(fd, $0) }) else {
        let e = errno
        close(fd)
        unlink(tmp)
        throw SandboxError("cannot write \(path): \(errnoString(e))")
    }
    return (tmp, fd)
}

func parentDirectory(_ path: String) -> String {
    guard let i = path.lastIndex(of: "/") else { return "." }
    return i == path.startIndex ? "/" : String(path[..<i])
}

/// realpath(3); nil if the path does not resolve.
func resolvedPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

/// Whether `path` is `base` or lies below it (both absolute and normalized).
func isWithin(_ path: String, _ base: String) -> Bool {
    if base == "/" { return path.hasPrefix("/") }
    return path == base || path.hasPrefix(base + "/")
}

func lstatPath(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

func statPath(_ path: String) -> stat? {
    var st = stat()
    return stat(path, &st) == 0 ? st : nil
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\n" || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\n" || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
