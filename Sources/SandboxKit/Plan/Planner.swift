import CSandbox
import Glibc

/// (Profile, ExecRequest) -> LaunchPlan. Every policy decision is made here;
/// the only host facts it reads are the ones the decisions depend on (owners
/// of the binds, which system paths exist and are symlinks, the blocked-path
/// walk the profile asks for).
public struct Planner {
    /// First host uid/gid of the range the sandbox's ids map to when sandboxd
    /// runs as root: the sandbox's root is never the host's root.
    public static let hostIDBase: UInt32 = 100_000
    public static let idRange: UInt32 = 65_536

    public init() {}

    public func plan(profile: Profile, request: ExecRequest) throws(SandboxError) -> LaunchPlan {
        guard !request.argv.isEmpty else { throw SandboxError("exec: no command given; usage: sandboxd exec [OPTIONS] -- CMD [ARG...]") }
        guard let workdir = resolvedPath(request.workdir), let wst = statPath(workdir), (wst.st_mode & S_IFMT) == S_IFDIR else {
            // U+FFFD is what reading a name that is not UTF-8 leaves (getcwd, arguments).
            let hint = request.workdir.unicodeScalars.contains("\u{FFFD}")
                ? " (a name in its path is probably not valid UTF-8, which sandboxd cannot carry: rename it)" : ""
            throw SandboxError("exec: --workdir \(request.workdir): not an existing directory\(hint)")
        }
        guard workdir != "/" else { throw SandboxError("exec: --workdir /: the host's root cannot be the workdir; pick a project directory") }
        let fs = profile.filesystem
        let ids = try idMapping(profile: profile, request: request, workdirOwner: (wst.st_uid, wst.st_gid))
        let rootMode = request.hostUID == 0

        var mounts: [LaunchPlan.Mount] = []
        var binds: [(source: String, dest: String)] = []
        var walkRoots: [String] = []

        // System directories, read-only. Host symlinks such as /lib -> usr/lib stay symlinks.
        var systemDirs: [(real: String, dest: String)] = []
        for spec in fs.readOnly {
            let (src, dest) = splitSpec(spec)
            guard let st = lstatPath(src) else { continue }
            if (st.st_mode & S_IFMT) == S_IFLNK && src == dest, let link = readLink(src) {
                mounts.append(.init(.symlink, source: link, target: dest))
                continue
            }
            guard let real = resolvedPath(src) else { continue }
            if let p = request.persistence, (st.st_mode & S_IFMT) == S_IFDIR || (st.st_mode & S_IFMT) == S_IFLNK {
                systemDirs.append((real, dest))
                // A named sandbox sees the host's system directories through an
                // overlay whose upper layer persists: installed tools survive.
                mounts.append(.init(.overlay, source: real, target: dest, idmap: rootMode,
                                    data: Persistence.overlayData(p, dest: dest)))
            } else {
                mounts.append(.init(.bind, source: real, target: dest, readOnly: true, optional: true))
            }
            binds.append((real, dest))
        }
        // Root only: the shared overlay's lower layer is the host's root mount
        // alone, cloned by the parent; an unprivileged sandbox could only name
        // it with its locked submounts, which overlayfs refuses.
        if let p = request.persistence, rootMode, Self.canShareRootOverlay(systemDirs) {
            for i in mounts.indices where mounts[i].kind == .overlay {
                mounts[i].source = "/"
                mounts[i].data = Persistence.sharedOverlayData(p, dest: mounts[i].target)
            }
        }

        mounts.append(.init(.proc, target: "/proc"))
        for p in ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"] {
            mounts.append(.init(.readOnly, target: p, optional: true))
        }
        for p in ["/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/sched_debug",
                  "/proc/latency_stats", "/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/kallsyms", "/proc/kmsg"] {
            mounts.append(.init(.mask, target: p, optional: true))
        }
        mounts.append(.init(.dev, target: "/dev"))
        mounts.append(.init(.tmpfs, target: "/tmp", data: "mode=1777,size=\(fs.tmpSize)"))
        if let p = request.persistence {
            mounts.append(.init(.bind, source: p.home, target: fs.home, readOnly: !fs.homeWritable))
            if let plan = p.plan { mounts.append(.init(.bind, source: plan, target: Persistence.planPath, readOnly: true)) }
            mounts.append(.init(.bind, source: p.results, target: Persistence.resultsPath))
        } else {
            mounts.append(.init(.tmpfs, target: fs.home, data: "mode=0700,size=\(fs.homeSize),uid=\(ids.uid),gid=\(ids.gid)"))
            if !fs.homeWritable { mounts.append(.init(.readOnly, target: fs.home)) }
        }

        // The workdir at its own path (or where the request puts it), then extra read-write binds.
        let workdirWritable = fs.workdir == .readWrite
        let inside = request.workdirTarget ?? workdir
        // Idmapped even when read-only: a root-owned workdir must read as owned by the
        // sandbox's root, or its private files are unreadable (and git calls it dubious).
        mounts.append(.init(.bind, source: workdir, target: inside, readOnly: !workdirWritable,
                            idmap: rootMode && wst.st_uid == 0))
        binds.append((workdir, inside))
        walkRoots.append(workdir)
        // Caller binds come after /tmp and HOME, which would otherwise cover a bind below them.
        for spec in request.readOnly {
            let (src, dest) = splitSpec(spec)
            guard let real = resolvedPath(src) else { throw SandboxError("exec: --ro \(spec): \(src) does not exist") }
            mounts.append(.init(.bind, source: real, target: dest, readOnly: true))
            binds.append((real, dest))
        }
        for spec in fs.readWrite + request.readWrite {
            let (src, dest) = splitSpec(spec)
            guard let real = resolvedPath(src), let st = statPath(real) else {
                throw SandboxError("exec: read-write bind \(spec): \(src) does not exist")
            }
            mounts.append(.init(.bind, source: real, target: dest, idmap: rootMode && st.st_uid == 0))
            binds.append((real, dest))
            if (st.st_mode & S_IFMT) == S_IFDIR { walkRoots.append(real) }
        }

        // Protected paths stay read-only inside the writable workdir; .git itself
        // becomes a mount point so it cannot be swapped for another.
        var gitGuard: GitGuard? = nil
        if workdirWritable {
            gitGuard = GitGuard.prepare(workdir: workdir)
            if let g = gitGuard {
                mounts.append(.init(.bind, source: g.gitDir, target: inside + "/.git", idmap: rootMode && wst.st_uid == 0))
            }
            for p in fs.protected {
                mounts.append(.init(.readOnly, target: inside + "/" + p, optional: true))
            }
        }

        // Caches the sandbox could write are not used for it (or by it for later launches).
        let cacheSafe = !(CacheDirectory.shared?.isExposed(to: walkRoots) ?? false)
        var blockedPaths = BlockedPaths(binds: binds, walkRoots: walkRoots, workdir: workdir, hostHome: request.hostHome)
        if !cacheSafe { blockedPaths.index = nil }
        let blocked = try blockedPaths.resolve(blocked: fs.blocked, hide: fs.hide)
        mounts += blocked.targets.map(LaunchPlan.Mount.mask(at:))

        let env = environment(profile: profile, request: request, ids: ids, cwd: inside)
        let pathSearch = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? "/usr/bin:/bin"
        let capMask = try Capabilities.mask(profile.capabilities.keep)
        let programs = try SeccompCache.shared.programs(for: profile.seccomp, disk: cacheSafe)

        return LaunchPlan(
            profile: profile.name,
            namespaces: ["user", "mount", "pid", "net", "ipc", "uts", "cgroup"],
            ids: ids,
            hostname: profile.identity.hostname,
            mounts: mounts,
            cwd: inside,
            argv: request.argv,
            environment: env,
            pathSearch: pathSearch,
            capabilities: Capabilities.names(capMask),
            capabilityMask: capMask,
            seccomp: programs,
            limits: profile.limits,
            timeout: request.timeout ?? profile.limits.timeout,
            loopback: profile.network.mode == .loopback,
            tty: request.tty,
            maskedCount: blocked.targets.count,
            walkedEntries: blocked.walked,
            directoriesRead: blocked.directoriesRead,
            directoriesReused: blocked.directoriesReused,
            gitGuard: gitGuard
        )
    }

    /// uid/gid maps. As root: the profile's uid maps to the workdir's owner
    /// when that is an ordinary user (so files keep their owner), otherwise to
    /// a dedicated id in 100000+; every other id inside maps into that range
    /// too. Never to host uid 0. Unprivileged: the profile's uid maps to the
    /// caller's own uid, and nothing else is mapped.
    func idMapping(profile: Profile, request: ExecRequest, workdirOwner: (uid_t, gid_t)) throws(SandboxError) -> LaunchPlan.IDMapping {
        let u = profile.identity.uid, g = profile.identity.gid
        guard request.hostUID == 0 else {
            return .init(uidMap: "\(u) \(request.hostUID) 1\n", gidMap: "\(g) \(request.hostGID) 1\n",
                         setupUID: u, setupGID: g, uid: u, gid: g, unprivileged: true)
        }
        func map(inside: UInt32, owner: UInt32) throws(SandboxError) -> String {
            let base = Planner.hostIDBase, range = Planner.idRange
            if owner == 0 { return "0 \(base) \(range)\n" }
            guard owner < base || owner >= base + range else {
                throw SandboxError("exec: the workdir's owner id \(owner) lies in sandboxd's id range \(base)-\(base + range - 1); chown the workdir to an ordinary user or root")
            }
            var lines = ""
            if inside > 0 { lines += "0 \(base) \(inside)\n" }
            lines += "\(inside) \(owner) 1\n"
            if inside + 1 < range { lines += "\(inside + 1) \(base + inside + 1) \(range - inside - 1)\n" }
            return lines
        }
        var ids = LaunchPlan.IDMapping(
            uidMap: try map(inside: u, owner: UInt32(workdirOwner.0)),
            gidMap: try map(inside: g, owner: UInt32(workdirOwner.1)),
            setupUID: 0, setupGID: 0, uid: u, gid: g, unprivileged: false)
        if u != 0 || g != 0 {
            // Root-owned binds must read as owned by the (non-root) command, and
            // its new files must land as root's on the host.
            let hostU = workdirOwner.0 != 0 ? UInt32(workdirOwner.0) : Planner.hostIDBase + u
            let hostG = workdirOwner.1 != 0 ? UInt32(workdirOwner.1) : Planner.hostIDBase + g
            ids.idmapUIDMap = "0 \(hostU) 1\n"
            ids.idmapGIDMap = "0 \(hostG) 1\n"
        }
        return ids
    }

    /// The scrubbed environment: allow-listed host variables, the profile's
    /// values, the sandbox's own (HOME, USER, PWD), then `--env`.
    func environment(profile: Profile, request: ExecRequest, ids: LaunchPlan.IDMapping, cwd: String) -> [String] {
        var env: [String: String] = [:]
        var order: [String] = []
        func set(_ k: String, _ v: String) {
            if env[k] == nil { order.append(k) }
            env[k] = v
        }
        for (k, v) in request.hostEnvironment.sorted(by: { $0.key < $1.key }) where keeps(k, profile.environment.keep) {
            set(k, v)
        }
        for (k, v) in profile.environment.set.sorted(by: { $0.key < $1.key }) { set(k, v) }
        let user = ids.uid == 0 ? "root" : "sandbox"
        set("HOME", profile.filesystem.home)
        set("USER", user)
        set("LOGNAME", user)
        set("PWD", cwd)
        set("SANDBOXD_PROFILE", profile.name)
        if let p = request.persistence {
            set("SANDBOXD_SANDBOX", p.name)
            if p.plan != nil { set("SANDBOXD_PLAN", Persistence.planPath) }
            set("SANDBOXD_RESULTS", Persistence.resultsPath)
        }
        if env["PATH"] == nil { set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") }
        for (k, v) in request.env { set(k, v) }
        return order.map { "\($0)=\(env[$0]!)" }
    }

    private func keeps(_ name: String, _ patterns: [String]) -> Bool {
        patterns.contains { p in p.hasSuffix("*") ? name.hasPrefix(String(p.dropLast())) : name == p }
    }

    /// Whether a named sandbox's system directories can all be served by one
    /// overlay of the host's root filesystem: each is a top-level directory
    /// of that filesystem (same mount as "/"), bound at its own path. One
    /// overlayfs then costs one mount, one work directory and one sync at
    /// teardown instead of one of each per directory.
    static func canShareRootOverlay(_ dirs: [(real: String, dest: String)]) -> Bool {
        let root = sbx_mount_id("/")
        guard root >= 0 else { return false }
        return dirs.allSatisfy { d in
            d.real == d.dest && d.dest.count > 1 && !d.dest.dropFirst().contains("/") && sbx_mount_id(d.real) == root
        }
    }

    private func splitSpec(_ spec: String) -> (String, String) {
        if let i = spec.firstIndex(of: ":") {
            return (String(spec[..<i]), String(spec[spec.index(after: i)...]))
        }
        return (spec, spec)
    }

    private func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
