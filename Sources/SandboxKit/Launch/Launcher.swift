import CSandbox
import Glibc

/// A started sandbox: its pid 1 on the host, and the descriptors to supervise it.
public struct LaunchedSandbox: Sendable {
    public var pid: Int32
    public var pidfd: Int32
    public var syncFD: Int32
    /// With a tty: the master side of the command's terminal, else -1.
    public var ptyMaster: Int32
    /// The sandbox's mount namespace, or -1: its last close tears the tree down.
    public var mountNamespace: Int32
}

/// Hands a `LaunchPlan` to the C launcher (`sbx_spawn`) as flat C structs and
/// turns its {stage, errno} failures into messages that say what to do.
public enum Launcher {
    /// Starts `plan`'s sandbox and returns once its command has been exec'd.
    ///
    /// - `intoCgroup`: a cgroup v2 directory (descriptor) pid 1 is cloned into.
    /// - `whileBuilding`: runs while pid 1 builds the sandbox's root, on the
    ///   other core; it returns the cgroup v1 `tasks` descriptors the command
    ///   joins first thing (pid 1 stays out of them): at least one, else the
    ///   launch fails (EINVAL at the cgroup-join stage). Making v1 groups costs
    ///   0.3-0.45 ms that is hidden there. If it throws, the child is killed and reaped.
    ///
    /// The calling thread must outlive the sandbox: pid 1 dies with it
    /// (its parent-death signal follows the thread that cloned it).
    public static func spawn(_ plan: LaunchPlan, intoCgroup: Int32? = nil, network: PreparedNetwork? = nil,
                             whileBuilding: (() throws(SandboxError) -> [Int32])? = nil)
        throws(SandboxError) -> LaunchedSandbox {
        let arena = CStrings()
        defer { arena.free() }

        var ops = plan.mounts.map { m in
            var flags: UInt32 = 0
            if m.readOnly { flags |= SBX_F_RDONLY.rawValue }
            if m.optional { flags |= SBX_F_OPTIONAL.rawValue }
            if m.idmap { flags |= SBX_F_IDMAP.rawValue }
            let target = m.rawTarget.map(arena.c(bytes:)) ?? arena.c(m.target)
            return sbx_op(kind: opKind(m.kind), flags: flags, source: arena.c(m.source), target: target,
                          data: arena.c(m.data))
        }
        let argv = arena.array(plan.argv)
        let envp = arena.array(plan.environment)
        var rlimits = [
            sbx_rlimit(resource: Int32(RLIMIT_NOFILE.rawValue), soft: plan.limits.openFiles, hard: plan.limits.openFiles),
            sbx_rlimit(resource: Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0),
        ]
        if plan.limits.fileSize > 0 {
            rlimits.append(sbx_rlimit(resource: Int32(RLIMIT_FSIZE.rawValue), soft: plan.limits.fileSize, hard: plan.limits.fileSize))
        }
        var bpf = plan.seccomp.flatMap(\.bytes)
        var bpfLens = plan.seccomp.map { UInt32($0.instructionCount) }

        var flags: UInt32 = SBX_PLAN_CGROUPNS.rawValue
        let prepared = PreparedNetwork.suits(plan) ? network?.descriptors() : nil
        if prepared != nil { flags |= SBX_PLAN_PREPARED_NETNS.rawValue } // lo is up already
        else if plan.loopback { flags |= SBX_PLAN_LOOPBACK.rawValue }
        if plan.tty { flags |= SBX_PLAN_TTY.rawValue }
        if whileBuilding != nil { flags |= SBX_PLAN_OVERLAP.rawValue }
        if plan.ids.unprivileged { flags |= SBX_PLAN_SETGROUPS_DENY.rawValue | SBX_PLAN_BINDS_IN_CHILD.rawValue }
        // Pid 1 runs in this process's memory rather than a copy of it (launch.c);
        // an unprivileged caller could not open the /proc files of its next
        // pid 1 once this one made the shared memory not dumpable.
        else { flags |= SBX_PLAN_SHARED_MEMORY.rawValue }
        let cloneFlags = sbx_clone_namespaces()

        var child = sbx_child()
        var err = sbx_error()
        var thrown: SandboxError?
        let rc: Int32 = ops.withUnsafeMutableBufferPointer { opsBuf in
            rlimits.withUnsafeMutableBufferPointer { rl in
                bpf.withUnsafeMutableBytes { bpfRaw in
                    bpfLens.withUnsafeMutableBufferPointer { lens in
                        var p = sbx_plan()
                        p.clone_flags = cloneFlags
                        p.flags = flags
                        p.uid_map = arena.c(plan.ids.uidMap)
                        p.gid_map = arena.c(plan.ids.gidMap)
                        p.idmap_uid_map = arena.c(plan.ids.idmapUIDMap)
                        p.idmap_gid_map = arena.c(plan.ids.idmapGIDMap)
                        p.setup_uid = plan.ids.setupUID
                        p.setup_gid = plan.ids.setupGID
                        p.uid = plan.ids.uid
                        p.gid = plan.ids.gid
                        p.hostname = arena.c(plan.hostname)
                        p.staging = arena.c("/tmp")
                        p.ops = UnsafePointer(opsBuf.baseAddress)
                        p.n_ops = UInt32(opsBuf.count)
                        p.cwd = arena.c(plan.cwd)
                        p.path_search = arena.c(plan.pathSearch)
                        p.argv = argv
                        p.envp = envp
                        p.cap_keep = plan.capabilityMask
                        p.bpf = UnsafeRawPointer(bpfRaw.baseAddress)?.assumingMemoryBound(to: sock_filter.self)
                        p.bpf_lens = UnsafePointer(lens.baseAddress)
                        p.n_bpf = UInt32(lens.count)
                        p.rlimits = UnsafePointer(rl.baseAddress)
                        p.n_rlimits = UInt32(rl.count)
                        p.cgroup_dir_fd = intoCgroup ?? -1
                        p.netns_fd = prepared?.netns ?? -1
                        p.netns_home_fd = prepared?.home ?? -1
                        // One pointer for both calls: pid 1 may read the plan in
                        // between (it can share this process's memory).
                        return withUnsafeMutablePointer(to: &p) { plan in
                            guard sbx_spawn(plan, &child, &err) == 0 else { return -1 }
                            var joinFDs: [Int32] = []
                            do throws(SandboxError) { joinFDs = try whileBuilding?() ?? [] } catch {
                                sbx_spawn_abort(&child)
                                thrown = error
                                return -1
                            }
                            return joinFDs.withUnsafeBufferPointer { sbx_spawn_finish(plan, &child, $0.baseAddress, UInt32($0.count), &err) }
                        }
                    }
                }
            }
        }
        if let thrown { throw thrown }
        guard rc == 0 else { throw describe(err, plan: plan) }
        return LaunchedSandbox(pid: child.pid, pidfd: child.pidfd, syncFD: child.sync_fd, ptyMaster: child.pty_master,
                               mountNamespace: child.mntns_fd)
    }

    /// One clear message per failure: the stage, the errno, the path involved, and how to fix it.
    static func describe(_ e: sbx_error, plan: LaunchPlan) -> SandboxError {
        let stage = String(cString: sbx_stage_name(e.stage))
        let why = errnoString(e.err)
        if e.stage == Int32(SBX_STAGE_EXECVE.rawValue) {
            let cmd = plan.argv[0]
            if e.err == ENOENT { return SandboxError("\(cmd): command not found in the sandbox (PATH=\(plan.pathSearch))", exitCode: ExitCode.notFound) }
            return SandboxError("\(cmd): cannot execute: \(why)", exitCode: ExitCode.cannotExecute)
        }
        var where_ = ""
        if e.stage == Int32(SBX_STAGE_MOUNT_OP.rawValue), e.index >= 0, Int(e.index) < plan.mounts.count {
            let m = plan.mounts[Int(e.index)]
            where_ = " (\(m.kind.rawValue) \(m.source.map { "\($0) -> " } ?? "")\(m.target))"
        }
        if e.stage == Int32(SBX_STAGE_IDMAP.rawValue), e.index >= 0, Int(e.index) < plan.mounts.count {
            where_ = " (\(plan.mounts[Int(e.index)].source ?? ""))"
        }
        var hint = ""
        switch (e.stage, e.err) {
        case (Int32(SBX_STAGE_CLONE.rawValue), EPERM), (Int32(SBX_STAGE_CLONE.rawValue), ENOSPC), (Int32(SBX_STAGE_CLONE.rawValue), EUSERS):
            hint = "; user namespaces are unavailable: check `sysctl user.max_user_namespaces` (must be > 0), `kernel.unprivileged_userns_clone=1`, and AppArmor's `kernel.apparmor_restrict_unprivileged_userns=0`; `sandboxd check` reports which"
        case (Int32(SBX_STAGE_IDMAP.rawValue), _):
            hint = "; the filesystem holding this path cannot do idmapped mounts (needs Linux >= 5.12 and ext4/xfs/btrfs/tmpfs); run sandboxd as the directory's owner, or chown it to an ordinary user"
        case (Int32(SBX_STAGE_MOUNT_OP.rawValue), ELOOP):
            hint = "; a symlink stands where a mount must go, and mounts never follow symlinks; replace the symlink or remove the path from the profile"
        case (Int32(SBX_STAGE_CGROUP_JOIN.rawValue), _):
            hint = "; sandboxd needs write access to its cgroup"
        case (Int32(SBX_STAGE_SECCOMP.rawValue), _):
            hint = "; the kernel must have CONFIG_SECCOMP_FILTER"
        default: break
        }
        return SandboxError("cannot set up the sandbox: \(stage)\(where_): \(why)\(hint)")
    }

    private static func opKind(_ k: LaunchPlan.Mount.Kind) -> UInt32 {
        switch k {
        case .bind: SBX_OP_BIND.rawValue
        case .tmpfs: SBX_OP_TMPFS.rawValue
        case .proc: SBX_OP_PROC.rawValue
        case .dev: SBX_OP_DEV.rawValue
        case .mask: SBX_OP_MASK.rawValue
        case .readOnly: SBX_OP_READONLY.rawValue
        case .symlink: SBX_OP_SYMLINK.rawValue
        case .overlay: SBX_OP_OVERLAY.rawValue
        }
    }
}

/// C strings that live until `free()`: the plan's strings for one sbx_spawn call.
final class CStrings {
    private var owned: [UnsafeMutablePointer<CChar>] = []
    private var arrays: [UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>] = []

    func c(_ s: String?) -> UnsafePointer<CChar>? {
        guard let s, let p = strdup(s) else { return nil }
        owned.append(p)
        return UnsafePointer(p)
    }

    /// `bytes` (no NUL among them) as a C string.
    func c(bytes: [UInt8]) -> UnsafePointer<CChar>? {
        guard let p = malloc(bytes.count + 1)?.assumingMemoryBound(to: CChar.self) else { return nil }
        bytes.withUnsafeBytes { if let b = $0.baseAddress { memcpy(p, b, bytes.count) } }
        p[bytes.count] = 0
        owned.append(p)
        return UnsafePointer(p)
    }

    /// A NULL-terminated argv-style array.
    func array(_ items: [String]) -> UnsafePointer<UnsafeMutablePointer<CChar>?> {
        let a = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: items.count + 1)
        for (i, s) in items.enumerated() {
            let p = strdup(s)!
            owned.append(p)
            a[i] = p
        }
        a[items.count] = nil
        arrays.append(a)
        return UnsafePointer(a)
    }

    func free() {
        owned.forEach { Glibc.free($0) }
        arrays.forEach { $0.deallocate() }
        owned = []
        arrays = []
    }
}
