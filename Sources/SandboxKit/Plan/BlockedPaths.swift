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
        var targets: [String] = []
        var walked = 0
        /// Directories the `**` walk read, and those its index answered.
        var directoriesRead = 0
        var directoriesReused = 0
    }

    func resolve(blocked: [String], hide: [String]) throws(SandboxError) -> Result {
        var out = Result()
        var seen = Set<String>()
        var inodes: [(UInt64, UInt64)] = []
        func add(_ target: String) {
            if seen.insert(target).inserted { out.targets.append(target) }
        }
        func maskHost(_ hostPath: String) {
            guard let st = lstatPath(hostPath) else { return }
            let path: String
            if (st.st_mode & S_IFMT) == S_IFLNK {
                guard let real = resolvedPath(hostPath) else { return }
                path = real
            } else {
                path = hostPath
            }
            // Even a secret no bind exposes may have another name inside one (a hard link).
            noteInodes(path, into: &inodes)
            guard let target = translate(path) else { return }
            add(target)
        }

        var walkPatterns: [String] = []
        for pattern in blocked {
            if pattern.hasPrefix("~/") {
                maskHost(hostHome + "/" + String(pattern.dropFirst(2)))
            } else if pattern.hasPrefix("/") {
                maskHost(pattern)
            } else if pattern.hasPrefix("**/") {
                walkPatterns.append(String(pattern.dropFirst(3)))
            } else if !pattern.contains("/") {
                for name in topLevelEntries(workdir) where fnmatch(pattern, name, 0) == 0 {
                    maskHost(workdir + "/" + name)
                }
            } else {
                maskHost(workdir + "/" + pattern)
            }
        }
        for path in hide { maskHost(path) }

        if !walkPatterns.isEmpty {
            for root in walkRoots {
                let walk = if let index { try index.walk(root, patterns: walkPatterns) }
                    else { try sbxWalk(root, patterns: walkPatterns, inodes: [], index: nil) }
                out.walked += walk.visited
                out.directoriesRead += walk.directoriesRead
                out.directoriesReused += walk.directoriesReused
                for (type, rel) in walk.hits {
                    let host = root + "/" + rel
                    if type == "l" {
                        maskHost(host)
                    } else if let target = translate(host) {
                        add(target)
                        if type == "f" { noteInodes(host, into: &inodes) }
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
                    if let target = translate(root + "/" + rel) { add(target) }
                }
            }
        }
        return out
    }

    /// Where a host path appears inside the sandbox, through the most specific bind.
    func translate(_ hostPath: String) -> String? {
        for (source, dest) in binds.reversed() where isWithin(hostPath, source) {
            let rest = hostPath.dropFirst(source == "/" ? 0 : source.count)
            return dest == "/" ? (rest.isEmpty ? "/" : String(rest)) : dest + String(rest)
        }
        return nil
    }

    /// Records the inode of a blocked file that has other names (and of every
    /// such file below a blocked directory), for the hard-link pass. Blocked
    /// directories are small (~/.ssh, ~/.aws); the descent stops after 10,000 entries.
    private func noteInodes(_ path: String, into inodes: inout [(UInt64, UInt64)]) {
        var budget = 10_000
        func visit(_ p: String) {
            guard budget > 0, let st = lstatPath(p) else { return }
            budget -= 1
            switch st.st_mode & S_IFMT {
            case S_IFREG where st.st_nlink > 1: inodes.append((UInt64(st.st_dev), UInt64(st.st_ino)))
            case S_IFDIR: for name in topLevelEntries(p) { visit(p + "/" + name) }
            default: break
            }
        }
        visit(path)
    }

    private func topLevelEntries(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
