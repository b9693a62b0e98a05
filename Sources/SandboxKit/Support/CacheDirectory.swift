import Glibc

/// Where sandboxd keeps what it can always rebuild: compiled seccomp programs
/// and blocked-path walk indexes. Both decide what a sandbox is allowed to do
/// or see, so the directory and each file are trusted only when they belong
/// to the caller and nobody else can write them; anything doubtful reads as
/// "not cached". Losing the directory only costs time.
struct CacheDirectory: Sendable {
    let path: String

    /// The caller's cache (`defaultPath`), shared by the seccomp cache and the walk index.
    static let shared: CacheDirectory? = defaultPath().map(CacheDirectory.init(path:))

    /// `$SANDBOXD_CACHE`, else /var/cache/sandboxd for root, else $XDG_CACHE_HOME or ~/.cache /sandboxd.
    static func defaultPath() -> String? {
        func env(_ k: String) -> String? { getenv(k).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
        if let d = env("SANDBOXD_CACHE") { return d }
        if geteuid() == 0 { return "/var/cache/sandboxd" }
        if let x = env("XDG_CACHE_HOME") { return x + "/sandboxd" }
        return env("HOME").map { $0 + "/.cache/sandboxd" }
    }

    /// The entry's bytes (at most `limit` of them, for `prefixOnly`), if it is a
    /// regular file of ours that only we can write and no larger than `limit`.
    func read(_ name: String, limit: Int, prefixOnly: Bool = false) -> [UInt8]? {
        let fd = open(path + "/" + name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid(),
              st.st_mode & 0o022 == 0, prefixOnly || st.st_size <= limit, trusted() else { return nil }
        var out = [UInt8](repeating: 0, count: min(Int(st.st_size), limit))
        var at = 0
        while at < out.count {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + at, $0.count - at, off_t(at)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            at += n
        }
        return out
    }

    /// Replaces the entry atomically (best effort: a cache that cannot be
    /// written only costs a later launch some time). `durable` also syncs it;
    /// without, a crash may leave the old entry or an empty or torn one, so
    /// such an entry must carry its own check.
    func write(_ name: String, _ data: [UInt8], durable: Bool) {
        if lstatPath(path) == nil { mkdir(path, 0o700) }
        guard trusted() else { return }
        let file = path + "/" + name
        if durable {
            try? writeFileAtomically(file, data, mode: 0o600)
        } else if let (tmp, fd) = try? writeTemporary(for: file, data, mode: 0o600) {
            close(fd)
            if rename(tmp, file) != 0 { unlink(tmp) }
        }
    }

    /// Marks an entry as in use (its mtime, which pruning by age reads), at most once a day.
    func markUsed(_ name: String) {
        let file = path + "/" + name
        guard let st = lstatPath(file), st.st_mtim.tv_sec < time(nil) - 86_400 else { return }
        utimensat(AT_FDCWD, file, nil, AT_SYMLINK_NOFOLLOW)
    }

    /// How long another build's entries are kept. They never match this
    /// build, but two installed builds used in turn would otherwise evict each
    /// other's entries on every launch (compiling seccomp again, ~4 ms, and
    /// walking trees in full); an hour still keeps rebuilds from piling up.
    static let otherBuildGrace = 3600

    /// Removes entries starting with `prefix` that `keep` rejects (given the
    /// name, a reader of the entry's first `head` bytes and its modification
    /// time in seconds), and the temporary files of writers killed before
    /// their rename (`NAME.tmp.PID`, PID gone).
    func prune(prefix: String, head: Int, keep: (String, () -> [UInt8]?, Int) -> Bool) {
        guard trusted(), let d = opendir(path) else { return }
        defer { closedir(d) }
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasPrefix(prefix) else { continue }
            let parts = name.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count >= 3, parts[parts.count - 2] == "tmp", let pid = Int32(parts[parts.count - 1]) {
                if pid != getpid(), kill(pid, 0) != 0, errno == ESRCH { unlink(path + "/" + name) }
                continue
            }
            guard let st = lstatPath(path + "/" + name) else { continue }
            if !keep(name, { read(name, limit: head, prefixOnly: true) }, st.st_mtim.tv_sec) { unlink(path + "/" + name) }
        }
    }

    /// Whether a sandbox whose writable trees are `roots` (host paths,
    /// resolved) could write here: through a bound HOME or workdir it could
    /// forge entries the next launch trusts (they would be ours), so such a
    /// launch must neither read nor write the cache.
    func isExposed(to roots: [String]) -> Bool {
        // The cache may not exist yet: resolve its deepest existing ancestor.
        var head = path, tail = ""
        while resolvedPath(head) == nil, head != "/", !head.isEmpty {
            let i = head.lastIndex(of: "/") ?? head.startIndex
            tail = String(head[i...]) + tail
            head = i == head.startIndex ? "/" : String(head[..<i])
        }
        guard let real = resolvedPath(head.isEmpty ? "." : head) else { return true }
        let full = (real == "/" ? "" : real) + tail
        return roots.contains { isWithin(full.isEmpty ? "/" : full, $0) }
    }

    private func trusted() -> Bool {
        guard let st = lstatPath(path) else { return false }
        return (st.st_mode & S_IFMT) == S_IFDIR && st.st_uid == geteuid() && st.st_mode & 0o022 == 0
    }
}
