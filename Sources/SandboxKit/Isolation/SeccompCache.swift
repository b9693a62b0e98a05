import CSeccomp
import Glibc

/// Compiled seccomp programs: in memory for this process, and on disk so a
/// launch does not recompile the same policy (libseccomp takes 1-1.5 ms for
/// Docker's list; a cached load takes tens of microseconds).
///
/// The disk cache is trusted only when its directory and file belong to the
/// caller and nobody else can write them: whoever can replace a cached
/// program can weaken every sandbox. Each file holds its full canonical key
/// (policy, libseccomp version, architecture), compared on load, so a stale or
/// colliding entry is never taken for a match. Any doubt means "recompile".
public final class SeccompCache: @unchecked Sendable {
    public static let shared = SeccompCache(directory: SeccompCache.defaultDirectory())

    private var memory: [SeccompPolicy: [SeccompProgram]] = [:]
    private let lock = Mutex()
    let directory: String?

    init(directory: String?) { self.directory = directory }

    public func programs(for policy: SeccompPolicy) throws(SandboxError) -> [SeccompProgram] {
        if let p = lock.withLock({ memory[policy] }) { return p }
        let key = SeccompCache.key(policy)
        let file = directory.map { "\($0)/seccomp-\(SeccompCache.fnv1a(key)).bpf" }
        if let file, let cached = load(file, key: key) {
            lock.withLock { memory[policy] = cached }
            return cached
        }
        let compiled = try SeccompCompiler.compile(policy)
        lock.withLock { memory[policy] = compiled }
        if let file { store(file, key: key, compiled) }
        return compiled
    }

    /// Everything the compiled bytes depend on, in a canonical form.
    static func key(_ policy: SeccompPolicy) -> String {
        let v = seccomp_version().pointee
        return "sandboxd-seccomp 4|libseccomp \(v.major).\(v.minor).\(v.micro)|arch \(seccomp_arch_native())"
            + "|allow \(policy.allow.sorted().joined(separator: ","))|deny \(policy.deny.sorted().joined(separator: ","))"
    }

    static func fnv1a(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// `$SANDBOXD_CACHE`, else /var/cache/sandboxd for root, else $XDG_CACHE_HOME or ~/.cache /sandboxd.
    static func defaultDirectory() -> String? {
        func env(_ k: String) -> String? { getenv(k).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } }
        if let d = env("SANDBOXD_CACHE") { return d }
        if geteuid() == 0 { return "/var/cache/sandboxd" }
        if let x = env("XDG_CACHE_HOME") { return x + "/sandboxd" }
        return env("HOME").map { $0 + "/.cache/sandboxd" }
    }

    /// File layout: the key line, a line of program lengths (instructions), then the raw programs.
    private func load(_ path: String, key: String) -> [SeccompProgram]? {
        guard trusted(parentDirectory(path)), let st = lstatPath(path), (st.st_mode & S_IFMT) == S_IFREG,
              st.st_uid == geteuid(), st.st_mode & 0o022 == 0, st.st_size < 1 << 20,
              let bytes = readBytes(path) else { return nil }
        guard let nl1 = bytes.firstIndex(of: 10), String(decoding: bytes[..<nl1], as: UTF8.self) == key,
              let nl2 = bytes[(nl1 + 1)...].firstIndex(of: 10) else { return nil }
        let lengths = String(decoding: bytes[(nl1 + 1)..<nl2], as: UTF8.self).split(separator: " ").compactMap { Int($0) }
        let body = bytes[(nl2 + 1)...]
        guard !lengths.isEmpty, lengths.reduce(0, +) * 8 == body.count else { return nil }
        var out: [SeccompProgram] = []
        var at = body.startIndex
        for n in lengths {
            out.append(SeccompProgram(bytes: Array(body[at..<(at + n * 8)])))
            at += n * 8
        }
        return out
    }

    private func store(_ path: String, key: String, _ programs: [SeccompProgram]) {
        let dir = parentDirectory(path)
        if lstatPath(dir) == nil { mkdir(dir, 0o700) }
        guard trusted(dir) else { return }
        var data = Array((key + "\n" + programs.map { String($0.instructionCount) }.joined(separator: " ") + "\n").utf8)
        for p in programs { data += p.bytes }
        // Best effort: a cache that cannot be written only costs the next launch a compile.
        try? writeFileAtomically(path, data, mode: 0o600)
    }

    private func trusted(_ dir: String) -> Bool {
        guard let st = lstatPath(dir) else { return false }
        return (st.st_mode & S_IFMT) == S_IFDIR && st.st_uid == geteuid() && st.st_mode & 0o022 == 0
    }

    private func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return n == 0 ? out : nil }
            out += buf[0..<n]
        }
    }
}
