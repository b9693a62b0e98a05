import CSandbox
import CSeccomp
import Glibc

/// Compiled seccomp programs: in memory for this process, and on disk so a
/// launch does not recompile the same policy (libseccomp takes 1-1.5 ms for
/// Docker's list; a cached load takes tens of microseconds).
///
/// The disk cache is a `CacheDirectory`, trusted only when it and the file
/// belong to the caller and nobody else can write them: whoever can replace a
/// cached program can weaken every sandbox. Each file holds its full key, compared
/// on load, so a stale or colliding entry is never taken for a match. The key
/// names what the program is made from: the profile's adjustments and the
/// executable's build ID, which covers the built-in lists, the compiler and
/// the statically linked libseccomp (keying by the expanded policy instead
/// meant sorting 350 names on every launch). Without a build ID nothing is
/// cached on disk. Any doubt means "recompile".
public final class SeccompCache: @unchecked Sendable {
    public static let shared = SeccompCache(directory: CacheDirectory.shared?.path)

    private var memory: [String: [SeccompProgram]] = [:]
    private let lock = Mutex()
    let directory: CacheDirectory?

    init(directory: String?) { self.directory = directory.map(CacheDirectory.init(path:)) }

    /// `disk: false` for a launch that could write the cache directory (see `CacheDirectory.isExposed`).
    public func programs(for seccomp: Profile.Seccomp, disk: Bool = true) throws(SandboxError) -> [SeccompProgram] {
        let key = SeccompCache.key(seccomp)
        if let p = lock.withLock({ memory[key] }) { return p }
        let file = SeccompCache.buildID == nil || !disk ? nil : "seccomp-\(SeccompCache.fnv1a(key)).bpf"
        if let file, let cached = load(file, key: key) {
            lock.withLock { memory[key] = cached }
            return cached
        }
        let compiled = try SeccompCompiler.compile(SeccompPolicy.forProfile(seccomp))
        lock.withLock { memory[key] = compiled }
        if let file { store(file, key: key, compiled) }
        return compiled
    }

    /// Everything the compiled bytes depend on.
    static func key(_ seccomp: Profile.Seccomp) -> String {
        let v = seccomp_version().pointee
        return "sandboxd-seccomp 6|build \(buildID ?? "none")|libseccomp \(v.major).\(v.minor).\(v.micro)"
            + "|arch \(seccomp_arch_native())|deny+ \(seccomp.deny.joined(separator: ","))|allow+ \(seccomp.allow.joined(separator: ","))"
    }

    /// This executable's GNU build ID: changes with any change to its code or data.
    static let buildID: String? = {
        var buf = [CChar](repeating: 0, count: 129)
        let n = Int(sbx_build_id(&buf, buf.count))
        guard n > 0 else { return nil }
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    static func fnv1a(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        // Sixteen hex digits by hand: String(_:radix:) is generic and ran
        // unspecialized here, with run-time witness lookups on every launch.
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0..<16 { out[15 - i] = digits[Int((h >> (4 * UInt64(i))) & 0xf)] }
        return String(decoding: out, as: UTF8.self)
    }

    /// File layout: the key line, a line of program lengths (instructions), then the raw programs.
    private func load(_ name: String, key: String) -> [SeccompProgram]? {
        guard let bytes = directory?.read(name, limit: 1 << 20) else { return nil }
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

    private func store(_ name: String, key: String, _ programs: [SeccompProgram]) {
        guard let directory else { return }
        var data = Array((key + "\n" + programs.map { String($0.instructionCount) }.joined(separator: " ") + "\n").utf8)
        for p in programs { data += p.bytes }
        directory.write(name, data, durable: true)
        // Entries of other builds never match this one (their key names
        // another build ID): remove them when a new entry is written, once
        // past CacheDirectory.otherBuildGrace, so rebuilding does not grow the directory.
        guard let id = SeccompCache.buildID else { return }
        let graceStart = time(nil) - CacheDirectory.otherBuildGrace
        directory.prune(prefix: "seccomp-", head: 512) { name, head, modified in
            guard name.hasSuffix(".bpf"), let bytes = head() else { return true }
            return modified >= graceStart || String(decoding: bytes.prefix { $0 != 10 }, as: UTF8.self).contains("|build \(id)|")
        }
    }
}
