import Glibc

// glibc functions the Swift Glibc module leaves out (they need _GNU_SOURCE or <sys/xattr.h>).
@_silgen_name("copy_file_range")
private func sys_copy_file_range(_ fdIn: Int32, _ offIn: UnsafeMutablePointer<Int64>?, _ fdOut: Int32,
                                 _ offOut: UnsafeMutablePointer<Int64>?, _ len: Int, _ flags: UInt32) -> Int
@_silgen_name("llistxattr") private func sys_llistxattr(_ path: UnsafePointer<CChar>, _ list: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int
@_silgen_name("lgetxattr") private func sys_lgetxattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeMutableRawPointer?, _ size: Int) -> Int
@_silgen_name("lsetxattr") private func sys_lsetxattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32) -> Int32
@_silgen_name("syncfs") private func sys_syncfs(_ fd: Int32) -> Int32
@_silgen_name("lremovexattr") private func sys_lremovexattr(_ path: UnsafePointer<CChar>, _ name: UnsafePointer<CChar>) -> Int32

/// File-system helpers of the store: reading and writing whole files, trees
/// created, removed and copied without ever following a symlink.
public enum FileSys {
    /// lstat(2); nil if the path does not exist (or cannot be reached).
    public static func lstat(_ path: String) -> stat? { lstatPath(path) }
    /// strerror(errno).
    public static func errorText(_ e: Int32 = errno) -> String { errnoString(e) }
    /// The directory part of an absolute path ("/" for "/x").
    public static func parent(_ path: String) -> String { parentDirectory(path) }
    /// realpath(3).
    public static func realPath(_ path: String) -> String? { resolvedPath(path) }
    public static func readLink(_ path: String) -> String? { readLinkText(path) }

    /// The whole file, or nil if it cannot be opened. Refuses files larger than `limit`.
    public static func read(_ path: String, limit: Int = 256 << 20) throws(SandboxError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw SandboxError("cannot open \(path): \(errnoString())")
        }
        defer { close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw SandboxError("cannot read \(path): \(errnoString())") }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
            if out.count > limit { throw SandboxError("\(path) is larger than \(limit) bytes") }
        }
        return out
    }

    /// Writes every byte of `buffer` to `fd`.
    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < buffer.count {
            let n = write(fd, buffer.baseAddress! + off, buffer.count - off)
            if n < 0 { if errno == EINTR { continue }; return false }
            off += n
        }
        return true
    }

    public static func exists(_ path: String) -> Bool { lstatPath(path) != nil }

    public static func isDirectory(_ path: String) -> Bool {
        guard let st = lstatPath(path) else { return false }
        return (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// mkdir, succeeding if a directory is already there.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws(SandboxError) {
        if mkdir(path, mode) == 0 { return }
        if errno == EEXIST, isDirectory(path) { return }
        throw SandboxError("cannot create directory \(path): \(errnoString())")
    }

    /// mkdir -p (absolute paths). Like mkdir -p, an existing symlink to a
    /// directory will do (a `$HOME` or `$SANDBOXD_HOME` reached through one).
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(SandboxError) {
        if let st = statPath(path), (st.st_mode & S_IFMT) == S_IFDIR { return }
        let parent = parentDirectory(path)
        if parent != path && parent != "/" && parent != "." { try makeDirectories(parent, mode: mode) }
        try makeDirectory(path, mode: mode)
    }

    /// Names in a directory, without "." and "..", unsorted. A name that is
    /// not valid UTF-8 comes back with U+FFFD in place of its bad bytes: for
    /// sandboxd's own files; trees of the sandbox's content use `entries`.
    public static func list(_ path: String) -> [String] {
        (try? readNames(path).map { $0.name ?? String(decoding: $0.bytes, as: UTF8.self) }) ?? []
    }

    /// Names in a directory of the sandbox's content, unsorted; refuses a
    /// name that is not valid UTF-8. sandboxd carries names as strings, so it
    /// could not copy, checkpoint or export such a file faithfully, and a
    /// silent skip would lose it (a rewind would then not bring it back).
    public static func entries(_ path: String) throws(SandboxError) -> [String] {
        var names: [String] = []
        for entry in try readNames(path) {
            guard let name = entry.name else {
                throw SandboxError("\(path)/\(RawPath.display(entry.bytes)): the name is not valid UTF-8, which sandboxd cannot carry faithfully; rename it (for example with convmv) and retry")
            }
            names.append(name)
        }
        return names
    }

    /// A directory's entries as read: the raw name, and the name as a string when it is valid UTF-8.
    private static func readNames(_ path: String) throws(SandboxError) -> [(bytes: [UInt8], name: String?)] {
        guard let names = RawPath.entries(Array(path.utf8)) else {
            if errno == ENOENT || errno == ENOTDIR { return [] }
            throw SandboxError("cannot read \(path): \(errnoString())")
        }
        return names.map { ($0, String(validating: $0, as: UTF8.self)) }
    }

    /// Removes every entry of directory `path` whose name is not in `keep`,
    /// names that are not valid UTF-8 included (byte for byte).
    public static func removeEntries(in path: String, except keep: Set<String>) throws(SandboxError) {
        let unwanted = try readNames(path).filter { $0.name.map { !keep.contains($0) } ?? true }
        guard !unwanted.isEmpty else { return }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError("cannot open \(path): \(errnoString())") }
        defer { close(fd) }
        for entry in unwanted {
            try removeEntry(fd, entry.bytes, display: path + "/" + String(decoding: entry.bytes, as: UTF8.self))
        }
    }

    public static func fsyncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    /// rename(2), then fsync of the directories involved.
    public static func rename(_ from: String, _ to: String) throws(SandboxError) {
        guard Glibc.rename(from, to) == 0 else { throw SandboxError("cannot rename \(from) to \(to): \(errnoString())") }
        fsyncDirectory(parentDirectory(to))
        if parentDirectory(from) != parentDirectory(to) { fsyncDirectory(parentDirectory(from)) }
    }

    /// Flushes the file system holding `path` (one call instead of an fsync per copied file).
    public static func syncFileSystem(of path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { _ = sys_syncfs(fd); close(fd) }
    }

    /// rm -rf that never follows symlinks and gets through directories the
    /// sandbox made unreadable. Missing paths are fine.
    public static func removeTree(_ path: String) throws(SandboxError) {
        guard let st = lstatPath(path) else { return }
        if (st.st_mode & S_IFMT) != S_IFDIR {
            guard unlink(path) == 0 || errno == ENOENT else { throw SandboxError("cannot remove \(path): \(errnoString())") }
            return
        }
        let parent = parentDirectory(path)
        let pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard pfd >= 0 else { throw SandboxError("cannot open \(parent): \(errnoString())") }
        defer { close(pfd) }
        try removeEntry(pfd, Array(path[path.index(after: path.lastIndex(of: "/")!)...].utf8), display: path)
    }

    /// Removes `name` (raw bytes, any encoding) in `dirfd`, recursively.
    private static func removeEntry(_ dirfd: Int32, _ name: [UInt8], display: String) throws(SandboxError) {
        let cname = name.map { CChar(bitPattern: $0) } + [0]
        if unlinkat(dirfd, cname, 0) == 0 || errno == ENOENT { return }
        guard errno == EISDIR else { throw SandboxError("cannot remove \(display): \(errnoString())") }
        var fd = openat(dirfd, cname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 && errno == EACCES {
            // A directory the sandbox made 000: only its owner (or root) can open it again.
            fchmodat(dirfd, cname, 0o700, 0)
            fd = openat(dirfd, cname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
        guard fd >= 0 else { throw SandboxError("cannot open \(display): \(errnoString())") }
        var st = stat()
        if fstat(fd, &st) == 0 && (st.st_mode & 0o300) != 0o300 { fchmod(fd, (st.st_mode & 0o7777) | 0o700) }
        guard let d = fdopendir(fd) else { close(fd); throw SandboxError("cannot read \(display): \(errnoString())") }
        defer { closedir(d) }
        while let e = readdir(d) {
            let child = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if child == [0x2E] || child == [0x2E, 0x2E] { continue }
            try removeEntry(fd, child, display: display + "/" + String(decoding: child, as: UTF8.self))
        }
        guard unlinkat(dirfd, cname, AT_REMOVEDIR) == 0 || errno == ENOENT else {
            throw SandboxError("cannot remove \(display): \(errnoString())")
        }
    }

    // MARK: Extended attributes

    /// The names of `path`'s extended attributes (the link itself for a symlink).
    public static func xattrNames(_ path: String) -> [String] {
        let n = sys_llistxattr(path, nil, 0)
        guard n > 0 else { return [] }
        var buf = [CChar](repeating: 0, count: n)
        let got = sys_llistxattr(path, &buf, n)
        guard got > 0 else { return [] }
        return buf[0..<got].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }

    public static func xattr(_ path: String, _ name: String) -> [UInt8]? {
        let n = sys_lgetxattr(path, name, nil, 0)
        guard n >= 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: max(n, 1))
        let got = buf.withUnsafeMutableBytes { sys_lgetxattr(path, name, $0.baseAddress, n) }
        guard got >= 0 else { return nil }
        return Array(buf[0..<got])
    }

    public static func setXattr(_ path: String, _ name: String, _ value: [UInt8]) -> Bool {
        value.withUnsafeBytes { sys_lsetxattr(path, name, $0.baseAddress, $0.count, 0) } == 0
    }

    /// The extended attributes sandboxd carries along with files: overlayfs's
    /// own (opaque directories, whiteouts) and user attributes. Never
    /// `security.*` (file capabilities would be a privilege) or ACLs.
    public static func isCarriedXattr(_ name: String) -> Bool {
        name.hasPrefix("user.") || name.hasPrefix("trusted.overlay.")
    }

    // MARK: Copying trees

    /// What a tree copy did, and how.
    public struct CopyStats: Sendable, Equatable {
        public var files = 0
        public var directories = 0
        public var symlinks = 0
        public var others = 0
        public var bytes: UInt64 = 0
        /// Files shared with the source through FICLONE (copy-on-write extents).
        public var reflinked = 0
        public var hardLinks = 0
    }

    /// FICLONE: share the source's extents (btrfs, xfs with reflink, bcachefs...).
    private static let ficlone: UInt = 0x4004_9409

    /// Copies the tree at `source` to `destination` (which must not exist),
    /// preserving types, modes, owners (when permitted), carried extended
    /// attributes, hard links within the tree, and timestamps. Regular files
    /// are reflinked when the file system allows, otherwise copied
    /// (copy_file_range, which the kernel may do server- or block-side).
    /// Symlinks are copied, never followed. Sockets are skipped.
    public static func copyTree(_ source: String, _ destination: String) throws(SandboxError) -> CopyStats {
        var copier = TreeCopier(preserveOwner: geteuid() == 0)
        guard let st = lstatPath(source) else { throw SandboxError("cannot copy \(source): \(errnoString())") }
        try copier.copy(source, destination, st)
        try copier.finishDirectories()
        return copier.stats
    }

    /// Makes the tree at `destination` exactly like `source` (types, contents,
    /// modes, owners, carried xattrs, hard links, times), touching only what
    /// differs: entries only in `destination` are removed, differing ones
    /// replaced, equal ones (same type, mode, owner, size, mtime, xattrs and
    /// bytes; single-linked) kept. Idempotent, so an interrupted sync is
    /// finished by running it again.
    /// The extended attributes a copy or an archive carries, by name.
    public static func carriedXattrs(_ path: String) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for n in xattrNames(path) where isCarriedXattr(n) { out[n] = xattr(path, n) ?? [] }
        return out
    }

    /// Whether two regular files hold the same bytes (false if either cannot be read).
    public static func sameContent(_ a: String, _ b: String) throws(SandboxError) -> Bool {
        guard let sa = lstatPath(a), let sb = lstatPath(b), sa.st_size == sb.st_size else { return false }
        var copier = TreeCopier(preserveOwner: false)
        return try copier.sameBytes(a, b, Int(sa.st_size))
    }

    public static func syncTree(_ source: String, _ destination: String) throws(SandboxError) -> CopyStats {
        var copier = TreeCopier(preserveOwner: geteuid() == 0)
        guard let st = lstatPath(source) else { throw SandboxError("cannot read \(source): \(errnoString())") }
        try copier.sync(source, destination, st)
        try copier.finishDirectories()
        return copier.stats
    }

    private struct TreeCopier {
        var preserveOwner: Bool
        let euid = geteuid(), egid = getegid()
        var compareBuffer = [UInt8](repeating: 0, count: 1 << 16)

        mutating func sync(_ src: String, _ dst: String, _ st: stat) throws(SandboxError) {
            let dstSt = lstatPath(dst)
            if (st.st_mode & S_IFMT) == S_IFDIR {
                if let d = dstSt, (d.st_mode & S_IFMT) != S_IFDIR { try FileSys.removeTree(dst) }
                if dstSt == nil || (dstSt!.st_mode & S_IFMT) != S_IFDIR {
                    guard mkdir(dst, 0o700) == 0 else { throw SandboxError("cannot create \(dst): \(errnoString())") }
                } else {
                    chmod(dst, 0o700 | (dstSt!.st_mode & 0o7777))  // writable while its contents change
                }
                syncXattrs(src, dst)
                let wanted = try FileSys.entries(src).sorted()
                try FileSys.removeEntries(in: dst, except: Set(wanted))
                for name in wanted {
                    guard let cst = lstatPath(src + "/" + name) else { continue }
                    try sync(src + "/" + name, dst + "/" + name, cst)
                }
                stats.directories += 1
                pendingDirectories.append((dst, st))
                return
            }
            if let d = dstSt {
                if try same(src, st, dst, d) { return }
                try FileSys.removeTree(dst)
            }
            try copy(src, dst, st)
        }

        /// Whether `dst` already is exactly `src` (hard-linked files never are: their links are re-made).
        mutating func same(_ src: String, _ a: stat, _ dst: String, _ b: stat) throws(SandboxError) -> Bool {
            let type = a.st_mode & S_IFMT
            guard type == (b.st_mode & S_IFMT), a.st_mode == b.st_mode, a.st_uid == b.st_uid || !preserveOwner,
                  a.st_gid == b.st_gid || !preserveOwner, a.st_size == b.st_size, a.st_mtim.tv_sec == b.st_mtim.tv_sec,
                  a.st_mtim.tv_nsec == b.st_mtim.tv_nsec, a.st_nlink == 1, b.st_nlink == 1 else { return false }
            guard FileSys.carriedXattrs(src) == FileSys.carriedXattrs(dst) else { return false }
            switch type {
            case S_IFLNK: return FileSys.readLinkText(src) == FileSys.readLinkText(dst)
            case S_IFCHR, S_IFBLK: return a.st_rdev == b.st_rdev
            case S_IFREG: return try sameBytes(src, dst, Int(a.st_size))
            default: return true
            }
        }

        mutating func sameBytes(_ a: String, _ b: String, _ size: Int) throws(SandboxError) -> Bool {
            let fa = open(a, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), fb = open(b, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            defer { if fa >= 0 { close(fa) }; if fb >= 0 { close(fb) } }
            guard fa >= 0, fb >= 0 else { return false }
            var left = size
            while left > 0 {
                let want = min(left, compareBuffer.count / 2)
                let ok = compareBuffer.withUnsafeMutableBytes { buf -> Bool in
                    let half = buf.count / 2
                    var got = 0
                    while got < want {
                        let n = Glibc.read(fa, buf.baseAddress! + got, want - got)
                        if n <= 0 { return false }
                        got += n
                    }
                    got = 0
                    while got < want {
                        let n = Glibc.read(fb, buf.baseAddress! + half + got, want - got)
                        if n <= 0 { return false }
                        got += n
                    }
                    return memcmp(buf.baseAddress!, buf.baseAddress! + half, want) == 0
                }
                if !ok { return false }
                left -= want
            }
            return true
        }

        func syncXattrs(_ src: String, _ dst: String) {
            let want = FileSys.carriedXattrs(src), have = FileSys.carriedXattrs(dst)
            for n in have.keys where want[n] == nil { _ = sys_lremovexattr(dst, n) }
            for (n, v) in want where have[n] != v { _ = FileSys.setXattr(dst, n, v) }
        }

        var stats = CopyStats()
        var reflinkWorks = true
        /// (dev, ino) of multiply-linked files already copied -> their copy.
        var linked: [String: String] = [:]
        /// Directories whose times are set once their contents are in place (deepest first).
        var pendingDirectories: [(String, stat)] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)

        mutating func copy(_ src: String, _ dst: String, _ st: stat) throws(SandboxError) {
            let type = st.st_mode & S_IFMT
            if type == S_IFDIR {
                guard mkdir(dst, 0o700) == 0 else { throw SandboxError("cannot create \(dst): \(errnoString())") }
                stats.directories += 1
                copyXattrs(src, dst)
                for name in try FileSys.entries(src).sorted() {
                    let s = src + "/" + name, d = dst + "/" + name
                    guard let cst = lstatPath(s) else { continue }
                    try copy(s, d, cst)
                }
                pendingDirectories.append((dst, st))
                return
            }
            if type != S_IFDIR && st.st_nlink > 1 {
                let key = "\(st.st_dev):\(st.st_ino)"
                if let first = linked[key] {
                    guard link(first, dst) == 0 else { throw SandboxError("cannot link \(dst): \(errnoString())") }
                    stats.hardLinks += 1
                    return
                }
                linked[key] = dst
            }
            switch type {
            case S_IFREG:
                try copyFile(src, dst, st)
            case S_IFLNK:
                guard let target = readLinkText(src) else { throw SandboxError("cannot read link \(src): \(errnoString())") }
                guard symlink(target, dst) == 0 else { throw SandboxError("cannot create link \(dst): \(errnoString())") }
                stats.symlinks += 1
                finish(dst, st, isLink: true)
            case S_IFCHR, S_IFBLK, S_IFIFO:
                // Character device 0:0 is an overlayfs whiteout (a file deleted from the lower layer).
                guard mknod(dst, (st.st_mode & S_IFMT) | 0o600, st.st_rdev) == 0 else {
                    throw SandboxError("cannot create \(dst): \(errnoString())")
                }
                stats.others += 1
                copyXattrs(src, dst)
                finish(dst, st, isLink: false)
            default:
                return  // sockets: nothing to copy
            }
        }

        mutating func copyFile(_ src: String, _ dst: String, _ st: stat) throws(SandboxError) {
            let inFD = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard inFD >= 0 else { throw SandboxError("cannot open \(src): \(errnoString())") }
            defer { close(inFD) }
            let outFD = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard outFD >= 0 else { throw SandboxError("cannot create \(dst): \(errnoString())") }
            defer { close(outFD) }
            stats.files += 1
            stats.bytes += UInt64(st.st_size)
            if st.st_size > 0 {
                var done = false
                if reflinkWorks {
                    if ioctl(outFD, FileSys.ficlone, inFD) == 0 {
                        done = true
                        stats.reflinked += 1
                    } else if errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV || errno == EINVAL {
                        reflinkWorks = false
                    }
                }
                if !done { try copyData(inFD, outFD, Int(st.st_size), src) }
            }
            copyXattrs(src, dst)
            if preserveOwner && (st.st_uid != euid || st.st_gid != egid) { fchown(outFD, st.st_uid, st.st_gid) }
            fchmod(outFD, st.st_mode & 0o7777)
            var times = [st.st_atim, st.st_mtim]
            futimens(outFD, &times)
        }

        mutating func copyData(_ inFD: Int32, _ outFD: Int32, _ size: Int, _ src: String) throws(SandboxError) {
            var left = size
            while left > 0 {
                let n = sys_copy_file_range(inFD, nil, outFD, nil, left, 0)
                if n > 0 { left -= n; continue }
                if n == 0 { return }  // the file shrank
                if errno == EINTR { continue }
                if errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS { break }
                throw SandboxError("cannot copy \(src): \(errnoString())")
            }
            if left == 0 { return }
            // What copy_file_range could not do.
            while true {
                let r = buffer.withUnsafeMutableBytes { Glibc.read(inFD, $0.baseAddress, $0.count) }
                if r < 0 { if errno == EINTR { continue }; throw SandboxError("cannot read \(src): \(errnoString())") }
                if r == 0 { break }
                let ok = buffer.withUnsafeBytes { FileSys.writeAll(outFD, UnsafeRawBufferPointer(rebasing: $0[0..<r])) }
                guard ok else { throw SandboxError("cannot write a copy of \(src): \(errnoString())") }
            }
        }

        func copyXattrs(_ src: String, _ dst: String) {
            for name in FileSys.xattrNames(src) where FileSys.isCarriedXattr(name) {
                if let v = FileSys.xattr(src, name) { _ = FileSys.setXattr(dst, name, v) }
            }
        }

        func finish(_ path: String, _ st: stat, isLink: Bool) {
            if preserveOwner { fchownat(AT_FDCWD, path, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) }
            if !isLink { chmod(path, st.st_mode & 0o7777) }
            var times = [st.st_atim, st.st_mtim]
            utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
        }

        /// Modes, owners and times of directories, deepest first (the order they were completed).
        mutating func finishDirectories() throws(SandboxError) {
            for (path, st) in pendingDirectories { finish(path, st, isLink: false) }
            pendingDirectories.removeAll()
        }
    }

    static func readLinkText(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Total size in bytes and number of entries below `path` (not following symlinks).
    public static func usage(_ path: String) -> (bytes: UInt64, entries: Int) {
        guard let st = lstatPath(path) else { return (0, 0) }
        var bytes = UInt64(st.st_blocks) * 512, entries = 1
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in list(path) {
                let u = usage(path + "/" + name)
                bytes += u.bytes
                entries += u.entries
            }
        }
        return (bytes, entries)
    }
}

/// Time stamps as the store writes them: UTC, ISO 8601, milliseconds.
public enum Clock {
    public static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }

    public static func iso(_ ts: timespec = Clock.now()) -> String {
        var t = ts.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%S", &parts)
        let ms = ts.tv_nsec / 1_000_000
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) + ".\(msText)Z"
    }

    public static func seconds(_ ts: timespec = Clock.now()) -> Double { Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 }

    public static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// A random hexadecimal identifier (`bytes` random bytes).
    public static func randomID(bytes: Int = 8) -> String {
        var g = SystemRandomNumberGenerator()
        return SHA256.hex((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &g) })
    }
}

/// fsyncs done on a helper thread while the main thread goes on (the run's
/// start record is made durable while the sandbox starts). `wait()` joins;
/// the descriptors are closed by the thread. The thread blocks every
/// signal, so signals keep going to the supervisor's signalfd, and makes no
/// allocation.
public final class DeferredSync: @unchecked Sendable {
    private var fds: [Int32] = []
    /// The descriptors, a -1 terminator, then the first fsync errno (0: none): the thread's only data.
    private var buffer: UnsafeMutablePointer<Int32>? = nil
    private var thread: pthread_t? = nil
    /// The errno of the first fsync that failed, 0 if none (valid after `wait`).
    public private(set) var failure: Int32 = 0

    public init() {}

    /// Adds a descriptor (this object now owns it).
    public func add(_ fd: Int32) { fds.append(fd) }

    /// The descriptors added and not yet started, for a finisher to sync
    /// instead; they stay owned here (closed by `wait`) until `forget`.
    var pending: [Int32] { fds }

    /// Drops the pending descriptors: a finisher owns (and syncs) them now.
    func forget() { fds.removeAll() }

    public func start() {
        guard !fds.isEmpty, thread == nil else { return }
        let buf = UnsafeMutablePointer<Int32>.allocate(capacity: fds.count + 2)
        for (i, fd) in fds.enumerated() { buf[i] = fd }
        buf[fds.count] = -1
        buf[fds.count + 1] = 0
        buffer = buf
        var all = sigset_t(), old = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, &old)
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let p = arg!.assumingMemoryBound(to: Int32.self)
            var i = 0
            while p[i] >= 0 { i += 1 }
            let failure = p + i + 1
            for j in 0..<i {
                if fsync(p[j]) != 0 && failure.pointee == 0 { failure.pointee = errno }
                close(p[j])
            }
            return nil
        }, buf)
        pthread_sigmask(SIG_SETMASK, &old, nil)
        if rc == 0 {
            thread = tid
        } else {
            // No thread: sync here.
            syncHere()
            buf.deallocate()
            buffer = nil
        }
        fds.removeAll()
    }

    private func syncHere() {
        for fd in fds {
            if fsync(fd) != 0 && failure == 0 { failure = errno }
            close(fd)
        }
        fds.removeAll()
    }

    /// Waits until everything added is on disk.
    public func wait() {
        if let t = thread {
            pthread_join(t, nil)
            thread = nil
        }
        if let b = buffer {
            var i = 0
            while b[i] >= 0 { i += 1 }
            if failure == 0 { failure = b[i + 1] }
            b.deallocate()
            buffer = nil
        }
        syncHere()
    }

    deinit { wait() }
}

extension FileSys {
    /// Starts replacing `path` atomically with a file that a durable log can
    /// rebuild (the manifest, from the audit log): `data` is written to a
    /// temporary file whose fsync joins `batch` (the log's lines); `commit`
    /// waits for the batch and renames the file over `path`. The directory is
    /// not synced: a rename lost to a power cut leaves the previous version,
    /// which the log brings up to date.
    public static func replacement(_ path: String, _ data: [UInt8], mode: mode_t = 0o644,
                                   syncedWith batch: DeferredSync) throws(SandboxError) -> PendingReplacement {
        let (tmp, fd) = try writeTemporary(for: path, data, mode: mode)
        batch.add(fd)
        return PendingReplacement(path: path, temporary: tmp, batch: batch)
    }
}

/// A file written under a temporary name, renamed into place once synced.
public struct PendingReplacement {
    let path: String
    let temporary: String
    let batch: DeferredSync

    public func commit() throws(SandboxError) {
        batch.wait()
        guard batch.failure == 0 else {
            unlink(temporary)
            throw SandboxError("cannot write \(path): fsync failed: \(errnoString(batch.failure))")
        }
        guard Glibc.rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw SandboxError("cannot write \(path): \(errnoString(e))")
        }
    }
}
