import Glibc

/// `sandboxd exec NAME -- CMD`: resume a named sandbox. The profile is the
/// copy resolved at create, the workdir the sandbox's, and the persistent
/// layout (overlay upper layers, HOME, plan, results) comes from the store.
/// The run holds the sandbox's lock throughout and is recorded in the
/// manifest (before launch as running, after with its exit and resources)
/// and in the audit log.
public enum NamedExec {
    /// If `command` (exec's positional words) starts with the name of an
    /// existing sandbox followed by `--` or more words, that name and the
    /// command after it. Costs one stat.
    public static func split(_ command: [String], store: SandboxStore) -> (name: String, argv: [String])? {
        guard command.count >= 2, let first = command.first, first != "--", !first.hasPrefix("-"), store.exists(first) else { return nil }
        var rest = Array(command.dropFirst())
        if rest.first == "--" { rest.removeFirst() }
        return (first, rest)
    }

    /// The profile a sandbox was created with, from its manifest.
    public static func profile(_ m: SandboxManifest) throws(SandboxError) -> Profile {
        let file = "manifest.json (profile \(m.profileName))"
        do {
            let table = try TOMLParser.parse(m.profileTOML, file: file)
            var p = Profile(name: m.profileName)
            try ProfileDecoder(file: file).apply(table, to: &p)
            p.name = m.profileName
            p.source = m.profileSource
            return p
        } catch {
            throw SandboxError("sandbox \(m.name): its profile copy does not load: \(error)")
        }
    }

    /// `template` with the sandbox's workdir and persistence filled in.
    public static func request(_ template: ExecRequest, manifest m: SandboxManifest, paths p: SandboxPaths, store: SandboxStore) throws(SandboxError) -> ExecRequest {
        var r = template
        r.workdir = store.workdir(m, p)
        // A managed workdir travels with the sandbox, so it sits at one path inside
        // wherever the state directory is; a host directory (--workdir at create) keeps its own.
        if m.externalWorkdir == nil { r.workdirTarget = Persistence.workdirPath }
        if let repo = m.repository {
            // A worker's sandbox: its worktree (reused) and the git directories it needs.
            let session = try RepoSession.begin(repo: repo.path, worker: repo.worker, base: repo.base, claims: [])
            r.workdir = session.workdir
            r.readOnly += session.readOnly
            r.readWrite += session.readWrite
        }
        // Without symlinks: overlayfs is handed the layers as paths, which an
        // unprivileged sandbox resolves under /oldroot, where an absolute link would miss.
        let real = resolvedPath(p.dir).map { SandboxPaths(dir: $0) } ?? p
        r.persistence = Persistence(name: m.name, rootChanges: real.rootChanges, home: real.home,
                                    plan: m.plan != nil && FileSys.exists(real.plan) ? real.plan : nil, results: real.results)
        return r
    }

    /// The launch plan for a named sandbox, without taking its lock (for `--dry-run`).
    public static func plan(store: SandboxStore, name: String, template: ExecRequest) throws(SandboxError) -> LaunchPlan {
        let m = try store.load(name)
        let p = store.paths(name)
        return try Planner().plan(profile: try profile(m), request: try request(template, manifest: m, paths: p, store: store))
    }

    /// Runs `template.argv` in the sandbox `name`; returns the plan used and the result.
    public static func run(store: SandboxStore, name: String, template: ExecRequest, workflowID: String,
                           cgroupName: String, supervisor: Supervisor = Supervisor()) throws(SandboxError) -> (LaunchPlan, SandboxResult) {
        let session = try SandboxSession.open(store: store, name: name, operation: "exec", workflow: workflowID)
        defer { session.lock.release() }
        let prof = try profile(session.manifest)
        let req = try request(template, manifest: session.manifest, paths: session.paths, store: store)
        let plan: LaunchPlan
        do {
            plan = try Planner().plan(profile: prof, request: req)
            try prepareDirectories(plan: plan, paths: session.paths, rootMode: template.hostUID == 0)
        } catch {
            _ = try? session.record("exec.refused", workflow: workflowID, [("argv", .strings(template.argv)), ("error", .string(error.message))])
            try? session.save()
            throw error
        }

        // The start is one audit line, made durable by a helper thread while
        // the sandbox starts; the manifest takes it in at once (in memory) and
        // is written when the run ends. A SIGKILL in between leaves the line
        // beyond the manifest's head, and the next session marks that run
        // interrupted (SandboxSession.recover).
        let id = session.manifest.runCount + 1
        let pending = DeferredSync()
        try session.record("exec.start", workflow: workflowID, [("run", .int(id)), ("argv", .strings(template.argv)),
                                                                 ("profile", .string(prof.name)), ("cwd", .string(plan.cwd))],
                           deferred: pending)
        pending.start()

        // The end record is written while the cgroups are removed (Supervisor's
        // `finishing`): the end line is appended and the manifest written to
        // a temporary file. A finisher then takes over the mount tree's
        // teardown (the overlay's sync), the records' fsyncs, the manifest's
        // rename and the lock, so sandboxd answers without waiting for the
        // disk (see Finisher). If none can start, a helper thread syncs and
        // the manifest is renamed here.
        func finish(_ outcome: Result<SandboxResult, SandboxError>) throws(SandboxError) -> (DeferredSync, PendingReplacement) {
            pending.wait()
            var fields: [(String, JSON)] = [("run", .int(id))]
            switch outcome {
            case .success(let r):
                fields += [("state", .string(SandboxManifest.Run.State.exited.rawValue)), ("exit_code", .int(Int64(r.exitCode)))]
                if let s = r.signal { fields.append(("signal", .int(Int64(s)))) }
                fields += [("wall_seconds", .double(r.wallSeconds)), ("cpu_user_seconds", .double(r.userCPUSeconds)),
                           ("cpu_system_seconds", .double(r.systemCPUSeconds))]
                if let m = r.peakMemoryBytes { fields.append(("peak_memory_bytes", .uint(m))) }
                if r.timedOut { fields.append(("timed_out", .bool(true))) }
                if r.oomKilled { fields.append(("oom_killed", .bool(true))) }
            case .failure(let e):
                fields += [("state", .string(SandboxManifest.Run.State.failed.rawValue)), ("exit_code", .int(Int64(e.exitCode))),
                           ("error", .string(e.message))]
            }
            let batch = DeferredSync()
            if case .failure = outcome {
                try session.record("exec.failed", workflow: workflowID, fields, deferred: batch)
            } else {
                try session.record("exec.end", workflow: workflowID, fields, deferred: batch)
            }
            // Audit lines cut long arguments; the manifest keeps them whole.
            if let i = session.manifest.runs.lastIndex(where: { $0.id == id }) { session.manifest.runs[i].argv = template.argv }
            return (batch, try session.saving(with: batch))
        }
        var pendingManifest: PendingReplacement? = nil
        var ended = false
        do {
            let result = try supervisor.run(plan, cgroupName: cgroupName, finishing: { r, mounts throws(SandboxError) in
                ended = true
                let (batch, manifest) = try finish(.success(r))
                if Finisher.start(mountNamespace: mounts, batch: batch, replacement: manifest, lock: session.lock,
                                   direct: supervisor.teardown == .afterReturn) {
                    mounts = -1
                } else {
                    batch.start()
                    pendingManifest = manifest
                }
            })
            try pendingManifest?.commit()
            return (plan, result)
        } catch {
            // Only a launch that failed before its records were written gets here
            // with the run still open; a failed `finish` leaves the run recorded
            // as started only, which the next session marks interrupted.
            if !ended {
                let (batch, manifest) = try finish(.failure(error))
                batch.start()
                try manifest.commit()
            }
            throw error
        }
    }

    /// The directories the plan binds or overlays, present and owned by the
    /// host ids the sandbox's users map to: upper and work layers by the
    /// sandbox's root (the overlay's mounter), HOME and results by the
    /// command's user. Also checks that the sandbox's root can reach the
    /// upper layers by path, which overlayfs needs.
    static func prepareDirectories(plan: LaunchPlan, paths: SandboxPaths, rootMode: Bool) throws(SandboxError) {
        let ids = plan.ids
        let mounterUID = ids.hostUID(forInside: ids.setupUID) ?? geteuid()
        let mounterGID = ids.hostGID(forInside: ids.setupGID) ?? getegid()
        let userUID = ids.hostUID(forInside: ids.uid) ?? geteuid()
        let userGID = ids.hostGID(forInside: ids.gid) ?? getegid()
        var checked = false
        var seen: Set<String> = []
        for m in plan.mounts where m.kind == .overlay {
            let layers = (m.data ?? "").split(separator: "\n", omittingEmptySubsequences: false).prefix(2).map(String.init)
            guard layers.count == 2, !layers[0].isEmpty, !layers[1].isEmpty, seen.insert(layers[0]).inserted else { continue }
            if layers.contains(where: { $0.contains(",") || $0.contains(":") }) {
                throw SandboxError("the state directory \(paths.dir) contains ',' or ':', which overlayfs mount options cannot carry; set SANDBOXD_HOME to a plainer path")
            }
            try ensure(parentDirectory(layers[0]), uid: nil, gid: nil, mode: 0o755)
            try ensure(parentDirectory(layers[1]), uid: nil, gid: nil, mode: 0o755)
            try ensure(layers[0], uid: mounterUID, gid: mounterGID, mode: 0o755)
            try ensure(layers[1], uid: mounterUID, gid: mounterGID, mode: 0o755)
            if rootMode && !checked {
                try checkTraversable(layers[0], uid: mounterUID, gid: mounterGID)
                checked = true
            }
        }
        try ensure(paths.home, uid: userUID, gid: userGID, mode: 0o700)
        try ensure(paths.results, uid: userUID, gid: userGID, mode: 0o755)
    }

    private static func ensure(_ path: String, uid: UInt32?, gid: UInt32?, mode: mode_t) throws(SandboxError) {
        if lstatPath(path) == nil {
            try FileSys.makeDirectory(path, mode: mode)
            chmod(path, mode)
        }
        guard let st = lstatPath(path), (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SandboxError("\(path) should be a directory; the sandbox's state is damaged")
        }
        if let uid, let gid, geteuid() == 0, st.st_uid != uid || st.st_gid != gid {
            guard lchown(path, uid, gid) == 0 else { throw SandboxError("cannot chown \(path) to \(uid):\(gid): \(errnoString())") }
        }
    }

    /// Every directory above `path` must be searchable by the host uid the
    /// sandbox's root is: overlayfs opens its upper layer by path, with that uid's rights.
    private static func checkTraversable(_ path: String, uid: UInt32, gid: UInt32) throws(SandboxError) {
        var dir = parentDirectory(path)
        var chain: [String] = []
        while true {
            chain.append(dir)
            if dir == "/" { break }
            dir = parentDirectory(dir)
        }
        for d in chain.reversed() {
            guard let st = statPath(d) else { continue }
            let mode = st.st_mode
            let ok = st.st_uid == uid ? (mode & 0o100) != 0 : st.st_gid == gid ? (mode & 0o010) != 0 : (mode & 0o001) != 0
            if !ok {
                throw SandboxError("the sandbox's root (host uid \(uid)) cannot traverse \(d) (mode \(String(mode & 0o7777, radix: 8))), which holds its state; `chmod o+x \(d)`, or set SANDBOXD_HOME to a directory under a searchable path")
            }
        }
    }
}
