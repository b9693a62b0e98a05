import Glibc

@_silgen_name("renameat2")
private func sys_renameat2(_ olddirfd: Int32, _ oldpath: UnsafePointer<CChar>, _ newdirfd: Int32,
                           _ newpath: UnsafePointer<CChar>, _ flags: UInt32) -> Int32
private let RENAME_NOREPLACE: UInt32 = 1

/// Where one named sandbox keeps its state: `<state>/sandboxes/<name>/`.
///
/// ```
/// manifest.json   versioned manifest (atomically replaced)
/// lock            flock(2) target; says who holds it
/// audit.jsonl     hash-chained audit log
/// root/upper/L    overlay upper layer of system directory L (usr, etc, opt...)
/// root/work/L     overlayfs's work directory for it
/// home/           HOME
/// workdir/        the workdir, unless one was given at create
/// plan.md         the plan (read-only inside, at /sandbox/plan.md)
/// results/        /sandbox/results
/// checkpoints/N/  checkpoints: root, home, workdir, checkpoint.json
/// rewind.json     present only while a rewind is being applied
/// ```
public struct SandboxPaths: Sendable, Equatable {
    public let dir: String
    public init(dir: String) { self.dir = dir }
    public var manifest: String { dir + "/manifest.json" }
    public var lock: String { dir + "/lock" }
    public var audit: String { dir + "/audit.jsonl" }
    public var rootChanges: String { dir + "/root" }
    public var upper: String { dir + "/root/upper" }
    public var work: String { dir + "/root/work" }
    public var home: String { dir + "/home" }
    public var managedWorkdir: String { dir + "/workdir" }
    public var plan: String { dir + "/plan.md" }
    public var results: String { dir + "/results" }
    public var checkpoints: String { dir + "/checkpoints" }
    public var rewindJournal: String { dir + "/rewind.json" }
}

/// What `create` is given.
public struct CreateOptions: Sendable {
    public var name: String
    public var profile: Profile
    public var workdir: String?
    public var planFile: String?
    public var repository: SandboxManifest.Repository?
    public var workflowID: String
    public init(name: String, profile: Profile, workdir: String? = nil, planFile: String? = nil,
                repository: SandboxManifest.Repository? = nil, workflowID: String) {
        self.name = name
        self.profile = profile
        self.workdir = workdir
        self.planFile = planFile
        self.repository = repository
        self.workflowID = workflowID
    }
}

/// A sandbox as `list` and `inspect` show it.
public struct SandboxInfo: Sendable {
    public var manifest: SandboxManifest
    public var paths: SandboxPaths
    public var workdir: String
    /// Who holds the lock now (a run in progress, a checkpoint...).
    public var holder: SandboxLock.Holder?
    public var status: SandboxManifest.Status {
        holder.map { $0.operation == "exec" ? .running : manifest.status } ?? (manifest.status == .running ? .interrupted : manifest.status)
    }
}

/// The named sandboxes under `$SANDBOXD_HOME/sandboxes`.
///
/// Every change to a sandbox happens under its lock (`SandboxSession`);
/// every file that is replaced is replaced atomically (temporary file,
/// fsync, rename, fsync of the directory); new sandboxes appear by one
/// rename and removed ones disappear by one rename, so a sandboxd killed at
/// any point leaves each sandbox whole (or, for create, absent).
public struct SandboxStore: Sendable {
    /// The state directory (`$SANDBOXD_HOME`).
    public let root: String
    public var sandboxesDir: String { root + "/sandboxes" }

    public init(root: String) { self.root = root }

    /// `$SANDBOXD_HOME` (made absolute against `cwd`) when set; otherwise
    /// /var/lib/sandboxd for root and ~/.local/share/sandboxd for others.
    public static func defaultRoot(environment: [String: String], cwd: String, uid: UInt32 = geteuid(), home: String) -> String {
        if let h = environment["SANDBOXD_HOME"], !h.isEmpty {
            return h.hasPrefix("/") ? normalize(h) : normalize(cwd + "/" + h)
        }
        return uid == 0 ? "/var/lib/sandboxd" : home + "/.local/share/sandboxd"
    }

    static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for c in path.split(separator: "/") {
            if c == "." || c.isEmpty { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Names: a letter or digit, then letters, digits, `.`, `_` or `-`; at most 64.
    /// (They become directory names and parts of overlayfs mount options.)
    public static func validateName(_ name: String) throws(SandboxError) {
        let bytes = Array(name.utf8)
        func ok(_ b: UInt8) -> Bool {
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
        }
        guard !bytes.isEmpty, bytes.count <= 64, bytes.allSatisfy(ok), bytes[0] != 0x2E, bytes[0] != 0x2D, bytes[0] != 0x5F else {
            throw SandboxError("invalid sandbox name '\(name)': use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        }
    }

    public func paths(_ name: String) -> SandboxPaths { SandboxPaths(dir: sandboxesDir + "/" + name) }

    /// Whether `name` is an existing sandbox (one stat: cheap enough for exec's argument check).
    public func exists(_ name: String) -> Bool {
        guard (try? SandboxStore.validateName(name)) != nil else { return false }
        return lstatPath(paths(name).manifest) != nil
    }

    /// Every sandbox name, sorted.
    public func names() -> [String] {
        FileSys.list(sandboxesDir).filter { !$0.hasPrefix(".") && exists($0) }.sorted()
    }

    /// The manifest as on disk, without the lock.
    public func load(_ name: String) throws(SandboxError) -> SandboxManifest {
        try SandboxStore.validateName(name)
        guard let m = try SandboxStore.readManifest(paths(name)) else { throw noSuchSandbox(name) }
        return m
    }

    /// The manifest; if it is unreadable, the previous version at
    /// `manifest.json.prev`, which sandboxd wrote before its manifests were
    /// synced ahead of their rename (it renamed first and synced later). Only
    /// state from those versions has one, and a session removes it once the
    /// manifest reads back (`recover`).
    static func readManifest(_ p: SandboxPaths) throws(SandboxError) -> SandboxManifest? {
        guard let bytes = try FileSys.read(p.manifest) else { return nil }
        do throws(SandboxError) {
            return try SandboxManifest.parse(bytes, file: p.manifest)
        } catch {
            if let prev = try? FileSys.read(p.manifest + ".prev"), let m = try? SandboxManifest.parse(prev, file: p.manifest + ".prev") {
                return m
            }
            throw error
        }
    }

    func noSuchSandbox(_ name: String) -> SandboxError {
        let known = names()
        return SandboxError("no sandbox named '\(name)' in \(sandboxesDir)" + (known.isEmpty ? "" : "; there are: \(known.joined(separator: ", "))"))
    }

    /// The workdir of a sandbox: its own, or the host directory given at create.
    public func workdir(_ manifest: SandboxManifest, _ paths: SandboxPaths) -> String {
        manifest.externalWorkdir ?? paths.managedWorkdir
    }

    // MARK: Create

    /// Creates a sandbox: directories, the plan copy, the manifest and the
    /// first audit line are assembled in a hidden directory, which one
    /// rename then makes visible under its name.
    @discardableResult
    public func create(_ o: CreateOptions) throws(SandboxError) -> SandboxManifest {
        try SandboxStore.validateName(o.name)
        try ensureLayout()
        if exists(o.name) { throw SandboxError("a sandbox named '\(o.name)' already exists; pick another name or `sandboxd rm \(o.name)` first") }
        // Everything that can be refused is checked before a worktree is provisioned.
        var planBytes: [UInt8]? = nil
        if let f = o.planFile {
            guard let b = try FileSys.read(f, limit: 64 << 20) else { throw SandboxError("create --plan \(f): no such file") }
            planBytes = b
        }
        var external: String? = nil
        var repository = o.repository
        if let r = o.repository {
            // The worker's worktree (provisioned, or reused, by sandboxd-ext) is the workdir.
            let session = try RepoSession.begin(repo: r.path, worker: r.worker, base: r.base, claims: [])
            external = session.workdir
            repository?.base = session.base
        }
        if let w = o.workdir, external == nil {
            guard let real = resolvedPath(w), let st = statPath(real), (st.st_mode & S_IFMT) == S_IFDIR else {
                throw SandboxError("create --workdir \(w): not an existing directory")
            }
            guard real != "/" else { throw SandboxError("create --workdir /: the host's root cannot be a workdir") }
            external = real
        }

        let staging = sandboxesDir + "/.create-\(getpid())-\(Clock.randomID(bytes: 4))-\(o.name)"
        let p = SandboxPaths(dir: staging)
        do throws(SandboxError) {
            try FileSys.makeDirectory(staging, mode: 0o711)
            chmod(staging, 0o711)
            for d in [p.rootChanges, p.upper, p.work] { try FileSys.makeDirectory(d, mode: 0o755) }
            try FileSys.makeDirectory(p.home, mode: 0o700)
            try FileSys.makeDirectory(p.results, mode: 0o755)
            try FileSys.makeDirectory(p.checkpoints, mode: 0o700)
            if external == nil { try FileSys.makeDirectory(p.managedWorkdir, mode: 0o755) }
            let lfd = open(p.lock, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            if lfd >= 0 { close(lfd) }

            var m = SandboxManifest(name: o.name, created: Clock.iso(), profileName: o.profile.name,
                                    profileSource: o.profile.source, profileTOML: o.profile.renderTOML())
            m.externalWorkdir = external
            m.repository = repository
            if let planBytes {
                try writeFileAtomically(p.plan, planBytes, mode: 0o444)
                chmod(p.plan, 0o444)
                m.plan = .init(sha256: SHA256.hex(of: planBytes), bytes: Int64(planBytes.count),
                               source: resolvedPath(o.planFile!) ?? o.planFile!)
            }
            var fields: [(String, JSON)] = [("profile", .string(o.profile.name)), ("profile_sha256", .string(SHA256.hex(of: m.profileTOML))),
                                            ("workdir", .string(external ?? "workdir"))]
            if let plan = m.plan { fields.append(("plan_sha256", .string(plan.sha256))) }
            let line = try AuditLog(path: p.audit).append(event: "create", sandbox: o.name, workflow: o.workflowID, fields)
            m.apply(line)
            try writeFileAtomically(p.manifest, m.rendered(), mode: 0o644)
            FileSys.syncFileSystem(of: staging)
            let final = paths(o.name).dir
            guard sys_renameat2(AT_FDCWD, staging, AT_FDCWD, final, RENAME_NOREPLACE) == 0 else {
                let e = errno
                if e == EEXIST || e == ENOTEMPTY {
                    throw SandboxError("a sandbox named '\(o.name)' already exists; pick another name or `sandboxd rm \(o.name)` first")
                }
                throw SandboxError("cannot create \(final): \(errnoString(e))")
            }
            FileSys.fsyncDirectory(sandboxesDir)
            return m
        } catch {
            try? FileSys.removeTree(staging)
            throw error
        }
    }

    /// The state directory and `sandboxes/`, traversable (not readable) by
    /// others: the sandbox's root, an unprivileged host id, must reach its
    /// overlay layers by path.
    public func ensureLayout() throws(SandboxError) {
        if statPath(root).map({ ($0.st_mode & S_IFMT) != S_IFDIR }) ?? true {
            try FileSys.makeDirectories(root, mode: 0o711)
            chmod(root, 0o711)
        }
        if !FileSys.isDirectory(sandboxesDir) {
            try FileSys.makeDirectory(sandboxesDir, mode: 0o711)
            chmod(sandboxesDir, 0o711)
        }
    }

    // MARK: Inspect and list

    /// The sandbox as it is now. A run recorded as running whose sandboxd is
    /// gone (the lock is free) is marked interrupted on the way, when the
    /// lock can be taken without waiting.
    public func info(_ name: String) throws(SandboxError) -> SandboxInfo {
        try SandboxStore.validateName(name)
        let p = paths(name)
        // An exec that has answered may still be syncing its records (Finisher):
        // what is read after it is final.
        SandboxLock.awaitFinisher(directory: p.dir)
        var m = try load(name)
        // A run in progress is in the audit log only: take it in, read-only.
        try m.catchUp(with: AuditLog(path: p.audit))
        var holder = SandboxLock.holder(directory: p.dir)
        let stale = m.status == .running || m.runs.contains(where: { $0.state == .running })
        if holder == nil, stale || FileSys.exists(p.rewindJournal) {
            if let lock = SandboxLock.tryAcquire(directory: p.dir) {
                let recovering = SandboxSession(store: self, name: name, paths: p, lock: lock, manifest: try load(name))
                try recovering.recover(workflow: "wf-recovery-\(getpid())")
                lock.release()
                return SandboxInfo(manifest: recovering.manifest, paths: p, workdir: workdir(recovering.manifest, p), holder: nil)
            }
            holder = SandboxLock.holder(directory: p.dir)
        }
        return SandboxInfo(manifest: m, paths: p, workdir: workdir(m, p), holder: holder)
    }

    /// Every sandbox (those whose manifest cannot be read are reported in `broken`).
    public func list() -> (sandboxes: [SandboxInfo], broken: [(String, String)]) {
        collectGarbage()
        var out: [SandboxInfo] = []
        var broken: [(String, String)] = []
        for n in names() {
            do { out.append(try info(n)) } catch { broken.append((n, error.message)) }
        }
        return (out, broken)
    }

    /// Removes what killed sandboxd processes left in `sandboxes/`: half-made
    /// sandboxes (`.create-PID-*`), half-removed ones (`.trash-PID-*`) and
    /// half-imported ones (`.import-PID-*`), once PID is gone.
    public func collectGarbage() {
        for entry in FileSys.list(sandboxesDir) where entry.hasPrefix(".") {
            let parts = entry.dropFirst().split(separator: "-", maxSplits: 2)
            guard parts.count >= 2, ["create", "trash", "import"].contains(String(parts[0])), let pid = Int32(parts[1]) else { continue }
            if pid != getpid() && !SandboxLock.processExists(pid) {
                try? FileSys.removeTree(sandboxesDir + "/" + entry)
            }
        }
    }

    // MARK: Remove

    /// Removes a sandbox: under its lock, one rename out of sight, then the
    /// tree is deleted. An external workdir is left alone.
    public func remove(_ name: String, force: Bool, workflowID: String) throws(SandboxError) {
        let session = try SandboxSession.open(store: self, name: name, operation: "rm", workflow: workflowID)
        if let repo = session.manifest.repository, !force, RepoSession.hasUnpassedWork(repo: repo.path, worker: repo.worker) {
            throw SandboxError("sandbox \(name): the worktree of worker \(repo.worker) (repository \(repo.path)) holds work that has not passed the gate; run `sandboxd gate --repo \(repo.path) --worker \(repo.worker)` first, or pass --force to remove the sandbox anyway (the worktree itself stays until `sandboxd worktree rm`)")
        }
        let trash = sandboxesDir + "/.trash-\(getpid())-\(Clock.randomID(bytes: 4))-\(name)"
        try FileSys.rename(session.paths.dir, trash)
        session.lock.release()
        try FileSys.removeTree(trash)
        FileSys.fsyncDirectory(sandboxesDir)
    }
}

/// A sandbox opened for change: its lock is held for the session's life.
public final class SandboxSession {
    public let store: SandboxStore
    public let name: String
    public let paths: SandboxPaths
    public let lock: SandboxLock
    public var manifest: SandboxManifest

    init(store: SandboxStore, name: String, paths: SandboxPaths, lock: SandboxLock, manifest: SandboxManifest) {
        self.store = store
        self.name = name
        self.paths = paths
        self.lock = lock
        self.manifest = manifest
    }

    /// Takes the lock (refusing with "in use by pid P" if another sandboxd
    /// holds it), reads the manifest, and repairs what an interrupted
    /// sandboxd left: runs marked interrupted, a rewind finished or undone.
    public static func open(store: SandboxStore, name: String, operation: String, workflow: String) throws(SandboxError) -> SandboxSession {
        try SandboxStore.validateName(name)
        let p = store.paths(name)
        guard FileSys.exists(p.manifest) else { throw store.noSuchSandbox(name) }
        let lock = try SandboxLock.acquire(sandbox: name, directory: p.dir, operation: operation)
        guard let m = try SandboxStore.readManifest(p) else { throw store.noSuchSandbox(name) }
        let session = SandboxSession(store: store, name: name, paths: p, lock: lock, manifest: m)
        try session.recover(workflow: workflow)
        return session
    }

    public var workdir: String { store.workdir(manifest, paths) }
    public var audit: AuditLog { AuditLog(path: paths.audit) }

    /// Writes the manifest, atomically and durably.
    public func save() throws(SandboxError) {
        try writeFileAtomically(paths.manifest, manifest.rendered(), mode: 0o644)
    }

    /// Starts writing the manifest: its fsync joins the audit lines' in
    /// `batch`, and `commit()` puts it in place once they are all on disk. Its
    /// directory is not synced, as the log can rebuild it (`FileSys.replacement`).
    public func saving(with batch: DeferredSync) throws(SandboxError) -> PendingReplacement {
        try FileSys.replacement(paths.manifest, manifest.rendered(), mode: 0o644, syncedWith: batch)
    }

    /// Appends an audit line and applies it to the manifest (saved with the next `save`).
    @discardableResult
    public func record(_ event: String, workflow: String, _ fields: [(String, JSON)] = [],
                       deferred: DeferredSync? = nil) throws(SandboxError) -> AuditLog.Line {
        let line = try audit.append(event: event, sandbox: name, workflow: workflow, fields, deferred: deferred)
        manifest.apply(line)
        return line
    }

    /// Under the lock, nobody is running: a run still marked running was
    /// interrupted (sandboxd killed, machine stopped). Also finishes or
    /// undoes a rewind that was cut short, and removes temporary files.
    func recover(workflow: String) throws(SandboxError) {
        try recoverRewind(workflow: workflow)
        let head = manifest.auditSeq
        try manifest.catchUp(with: audit)
        var changed = manifest.auditSeq != head
        for run in manifest.runs where run.state == .running {
            changed = true
            try record("run.interrupted", workflow: run.workflowID.isEmpty ? workflow : run.workflowID,
                       [("run", .int(run.id)), ("run_pid", .int(Int64(run.pid))),
                        ("message", .string("sandboxd (pid \(run.pid)) stopped before the run ended; found by pid \(getpid()) at \(Clock.iso())"))])
        }
        if manifest.status == .running {
            manifest.status = .interrupted
            changed = true
        }
        if changed { try save() }
        // State of an older sandboxd: its `.prev` copy would outlive every
        // later manifest. The manifest as read (from `.prev` if need be) is
        // written first, so dropping the copy loses nothing.
        if FileSys.exists(paths.manifest + ".prev") {
            try save()
            unlink(paths.manifest + ".prev")
        }
        for entry in FileSys.list(paths.dir) where entry.hasPrefix("manifest.json.tmp.") || entry.hasPrefix("manifest.json.prev.tmp.") {
            unlink(paths.dir + "/" + entry)
        }
        for entry in FileSys.list(paths.checkpoints) where entry.hasPrefix(".") {
            try? FileSys.removeTree(paths.checkpoints + "/" + entry)
        }
    }
}
