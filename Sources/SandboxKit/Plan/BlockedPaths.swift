import CSandbox
import Glibc

/// Finds what the blocked-path patterns cover in the sandbox's binds and
/// returns the masks to mount.
///
/// Pattern forms (see docs/PROFILES.md):
/// - `~/x`: the invoking user's `x` on the host, masked wherever a bind exposes it;
/// - `/abs`: a host path, likewise;
/// - `**/glob`: any entry whose name matches, at any depth of the workdir and read-write binds;
/// - `glob` (no slash): entries at the top of the workdir;
/// - `a/b`: that path relative to the workdir.
///
/// `**` patterns are the only ones that walk, and they walk only the workdir and
/// read-write binds: system directories are not searched (masking
/// `/etc/ssl/certs/*.pem` would break TLS). Symlinks are never followed by the
/// walk; a matching symlink masks its target when the target is visible
/// inside. Hard links to a blocked file found anywhere in the walked trees are
/// masked too (their inode is the blocked file's).
struct BlockedPaths {
    /// Host source -> sandbox destination of every bind, most specific last.
    var binds: [(source: String, dest: String)]
    /// Trees the `**` patterns walk (host paths).
    var walkRoots: [String]
    var workdir: String
    var hostHome: String
    /// Where earlier walks are remembered; nil walks every directory every time.
    var index: WalkIndex? = WalkIndex.shared

    struct Result {
        /// Paths inside the sandbox to mask, byte for byte (see `RawPath`: a
        /// secret's name need not be UTF-8, and two names that are equal as
        /// Swift strings can be two files).
        var targets: [[UInt8]] = []
        var walked = 0
        /// Directories the `**` walk read, and those its index answered.
        var directoriesRead = 0
        var directoriesReused = 0
    }

    func resolve(blocked: [String], hide: [String]) throws(SandboxError) -> Result {
        var out = Result()
        var seen = Set<[UInt8]>()
        var inodes: [(UInt64, UInt64)] = []
        func add(_ target: [UInt8]) {
            if seen.insert(target).inserted { out.targets.append(target) }
        }
        func maskHost(_ hostPath: [UInt8]) {
            guard let st = RawPath.lstat(hostPath) else { return }
            let path: [UInt8]
            if (st.st_mode & S_IFMT) == S_IFLNK {
                guard let real = RawPath.resolved(hostPath) else { return }
                path = real
            } else {
                path = hostPath
            }
            // Even a secret no bind exposes may have another name inside one (a hard link).
            noteInodes(path, into: &inodes)
            guard let target = translate(path) else { return }
            add(target)
        }
        func below(_ directory: String, _ rel: [UInt8]) -> [UInt8] { Array(directory.utf8) + [RawPath.slash] + rel }

        var walkPatterns: [String] = []
        for pattern in blocked {
            if pattern.hasPrefix("~/") {
                maskHost(below(hostHome, Array(pattern.utf8.dropFirst(2))))
            } else if pattern.hasPrefix("/") {
                maskHost(Array(pattern.utf8))
            } else if pattern.hasPrefix("**/") {
                walkPatterns.append(String(pattern.dropFirst(3)))
            } else if !pattern.contains("/") {
                for name in RawPath.entries(Array(workdir.utf8)) ?? [] where RawPath.matches(pattern, name) {
                    maskHost(below(workdir, name))
                }
            } else {
                maskHost(below(workdir, Array(pattern.utf8)))
            }
        }
        for path in hide { maskHost(Array(path.utf8)) }

        if !walkPatterns.isEmpty {
            for root in walkRoots {
                let walk = if let index { try index.walk(root, patterns: walkPatterns) }
                    else { try sbxWalk(root, patterns: walkPatterns, inodes: [], index: nil) }
                out.walked += walk.visited
                out.directoriesRead += walk.directoriesRead
                out.directoriesReused += walk.directoriesReused
                for (type, rel) in walk.hits {
                    let host = below(root, rel)
                    if type == UInt8(ascii: "l") {
                        maskHost(host)
                    } else if let target = translate(host) {
                        add(target)
                        if type == UInt8(ascii: "f") { noteInodes(host, into: &inodes) }
                    }
                }
            }
        }
        // Another name for a blocked file's inode would read the same bytes.
        if !inodes.isEmpty {
            for root in walkRoots {
                let walk = try sbxWalk(root, patterns: [], inodes: inodes, index: nil)
                out.walked += walk.visited
                for (_, rel) in walk.hits {
                    if let target = translate(below(root, rel)) { add(target) }
                }
            }
        }
        return out
    }

    /// Where a host path appears inside the sandbox, through the most specific bind.
    func translate(_ hostPath: [UInt8]) -> [UInt8]? {
        for (source, dest) in binds.reversed() {
            let from = Array(source.utf8)
            guard RawPath.isWithin(hostPath, from) else { continue }
            let rest = hostPath.dropFirst(source == "/" ? 0 : from.count)
            return dest == "/" ? (rest.isEmpty ? [RawPath.slash] : Array(rest)) : Array(dest.utf8) + rest
        }
        return nil
    }

    /// Records the inode of a blocked file that has other names (and of every
    /// such file below a blocked directory), for the hard-link pass. Blocked
    /// directories are small (~/.ssh, ~/.aws); the descent stops after 10,000 entries.
    private func noteInodes(_ path: [UInt8], into inodes: inout [(UInt64, UInt64)]) {
        var budget = 10_000
        func visit(_ p: [UInt8]) {
            guard budget > 0, let st = RawPath.lstat(p) else { return }
            budget -= 1
            switch st.st_mode & S_IFMT {
            case S_IFREG where st.st_nlink > 1: inodes.append((UInt64(st.st_dev), UInt64(st.st_ino)))
            case S_IFDIR: for name in RawPath.entries(p) ?? [] { visit(p + [RawPath.slash] + name) }
            default: break
            }
        }
        visit(path)
    }
}
