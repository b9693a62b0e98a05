import CGit2
import Glibc

/// One bind mount a sandbox needs for a worker's worktree.
public struct WorkspaceMount: Sendable, Equatable, CustomStringConvertible {
    /// Host path.
    public var source: String
    /// Path inside the sandbox. Defaults to `source`: the worktree's git files name the git
    /// directory and the central objects by absolute path, so those two must keep their paths.
    public var target: String
    public var readOnly: Bool
    /// Why it is mounted, for messages and `--json`.
    public var purpose: String

    public init(source: String, target: String, readOnly: Bool, purpose: String) {
        self.source = source
        self.target = target
        self.readOnly = readOnly
        self.purpose = purpose
    }

    public var description: String { "\(source) -> \(target) (\(readOnly ? "ro" : "rw")): \(purpose)" }
}

/// A worker's linked worktree of a central repository, as provisioned by `Workspace.provision`.
///
/// Layout (see docs/WORKSPACES.md):
/// ```
/// <stateDir>/worktrees/<repoID>/<worker>/        the work tree (its .git file points at gitDir)
/// <stateDir>/worktrees/<repoID>/<worker>.git/    the worker's private git directory
/// <stateDir>/worktrees/<repoID>/<worker>.meta    metadata: repository, branch, base commit
/// <central .git>/worktrees/<worker>/             git's registration of the worktree (host only)
/// ```
public struct WorktreeInfo: Sendable, Equatable {
    public var worker: String
    /// Stable id of the central repository: `<name>-<12 hex digits of a hash of its git directory>`.
    public var repoID: String
    /// The central repository's git directory (its common directory).
    public var centralGitDir: String
    /// The central repository's work tree; nil for a bare repository.
    public var centralWorkdir: String?
    /// The central object database: the worker reads it through alternates and never writes it.
    public var centralObjectsDir: String
    /// The work tree. Writable in the sandbox.
    public var path: String
    /// The worker's private git directory: HEAD, index, logs, refs, config, hooks and objects the
    /// worker writes. The worktree's `.git` file names it. Writable in the sandbox.
    public var gitDir: String
    /// The git common directory the worker's git uses. In this design it is `gitDir` itself: a
    /// per-worker copy of refs and config whose `objects/info/alternates` names the central objects.
    public var commonDir: String
    /// Where the worker's new objects go (`gitDir/objects`): the staging area the gate imports from.
    public var objectsDir: String
    /// git's registration of the worktree in the central repository (`<central>/worktrees/<worker>`).
    /// It keeps the branch checked out (so nobody deletes it) and is used on the host only: never
    /// mount it writable.
    public var registrationDir: String
    public var metadataPath: String
    /// `refs/heads/sandboxd/<worker>` (in the central repository and in the worker's git directory).
    public var branch: String
    /// The commit the worktree was created from.
    public var base: String
    /// The last commit that passed the gate (and is the central branch's tip), if any.
    public var passed: String?
    /// Unix time of provisioning.
    public var created: Int64

    /// What the next gate compares against: the last passed commit, else the base.
    public var gateBase: String { passed ?? base }

    /// The bind mounts a sandbox running this worker needs, in order: the central objects (and
    /// their own alternates) read-only, the worker's git directory and work tree writable. Nothing
    /// else of the central repository is needed; mounting more of it (config with credentials,
    /// hooks, other worktrees) is unnecessary and, if writable, unsafe.
    public var mounts: [WorkspaceMount] {
        var m = [WorkspaceMount(source: centralObjectsDir, target: centralObjectsDir, readOnly: true,
                                purpose: "central objects, read through the worker's alternates")]
        for alt in Workspace.alternates(ofObjectsDir: centralObjectsDir) {
            m.append(WorkspaceMount(source: alt, target: alt, readOnly: true,
                                    purpose: "alternate object store of the central repository"))
        }
        m.append(WorkspaceMount(source: gitDir, target: gitDir, readOnly: false,
                                purpose: "the worker's git directory (refs, index, objects it writes)"))
        m.append(WorkspaceMount(source: path, target: path, readOnly: false,
                                purpose: "the worker's work tree (may be mounted at another target)"))
        return m
    }
}

/// What a worktree holds that has not passed the gate.
public struct WorktreeStatus: Sendable, Equatable {
    /// The commit HEAD points at in the worker's git directory.
    public var head: String?
    /// Paths with uncommitted changes (staged, unstaged or untracked; ignored files excluded).
    public var uncommitted: [String]
    /// Commits reachable from the worker's refs that the central repository does not have.
    public var unpassedCommits: Int
    /// The work tree directory is gone.
    public var missing: Bool
    /// Set when the state could not be read (then the worktree counts as holding work).
    public var problem: String?

    public var hasUnpassedWork: Bool { !uncommitted.isEmpty || unpassedCommits > 0 || problem != nil }

    /// "clean", "2 commits, 3 uncommitted changes not passed", ...
    public var summary: String {
        if let problem { return "unreadable (\(problem))" }
        var parts: [String] = []
        if unpassedCommits > 0 { parts.append("\(unpassedCommits) commit\(unpassedCommits == 1 ? "" : "s")") }
        if !uncommitted.isEmpty { parts.append("\(uncommitted.count) uncommitted change\(uncommitted.count == 1 ? "" : "s")") }
        if parts.isEmpty { return missing ? "missing work tree, nothing unpassed" : "clean" }
        return parts.joined(separator: ", ") + " not passed by the gate"
    }
}

/// The result of removing a worktree.
public struct WorktreeRemoval: Sendable, Equatable {
    public var worker: String
    public var path: String
    /// What was discarded (only non-empty with force).
    public var discarded: WorktreeStatus
    /// Whether the central branch was kept because it holds passed work.
    public var branchKept: Bool
    public var branch: String
}

/// Worker worktrees of central repositories: provisioning, inspection, removal.
public enum Workspace {
    /// `refs/heads/sandboxd/<worker>`.
    public static func branch(for worker: String) -> String { "refs/heads/sandboxd/\(worker)" }

    /// Worker names: 1-64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit; not ending in
    /// `.lock`, `.git` or `.meta` (they name branches, worktrees and sidecar files).
    public static func validateWorkerName(_ name: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { c in
                (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 46 || c == 95 || c == 45
            }
            && name.utf8.first.map { c in (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) } == true
            && !name.contains("..") && !name.hasSuffix(".lock") && !name.hasSuffix(".git") && !name.hasSuffix(".meta")
        if !ok {
            throw SandboxError(
                "invalid worker name '\(name)': use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
                    + "(not ending in .lock, .git or .meta)")
        }
    }

    // MARK: central repository

    /// The central repository a path belongs to: linked worktrees resolve to their main repository.
    struct Central {
        let repo: GitRepo
        let gitDir: String
        let workdir: String?
        let id: String

        static func open(_ path: String) throws -> Central {
            var repo = try GitRepo.discover(path)
            if repo.isWorktree {
                repo = try GitRepo.open(repo.commonDir)
            } else if let central = Workspace.centralOfWorkerGitDir(repo.gitDir) {
                // A worker's worktree (or its git directory): its central repository, as recorded in
                // the metadata file next to it, which the worker cannot write.
                repo = try GitRepo.open(central)
            }
            let gitDir = WorkspaceSys.realPath(repo.commonDir) ?? repo.commonDir
            return Central(repo: repo, gitDir: gitDir, workdir: repo.workdir, id: Workspace.repoID(gitDir: gitDir))
        }

        var objectsDir: String { gitDir + "/objects" }
    }

    /// `<name>-<hash>`: name from the repository directory, hash of the git directory's real path.
    public static func repoID(gitDir: String) -> String {
        _ = libgit2Ready
        var comps = gitDir.split(separator: "/").map(String.init)
        if comps.last == ".git" { comps.removeLast() }
        var name = comps.last ?? "repo"
        if name.hasSuffix(".git") { name.removeLast(4) }
        name = String(name.unicodeScalars.map { s -> Character in
            let ok = (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || s == "." || s == "_" || s == "-"
            return ok ? Character(s) : "_"
        })
        if name.isEmpty || name.hasPrefix(".") { name = "repo" + name }
        var oid = git_oid()
        let bytes = Array(gitDir.utf8)
        _ = bytes.withUnsafeBytes { git_odb_hash(&oid, $0.baseAddress, $0.count, GIT_OBJECT_BLOB) }
        return "\(name.prefix(40))-\(GitOID(oid).hex.prefix(12))"
    }

    /// The id `repoID(gitDir:)` gives the repository at (or containing) `repo`.
    public static func repoID(repo: String) throws -> String { try Central.open(repo).id }

    struct Paths {
        let repoDir: String
        let worktree: String
        let gitDir: String
        let meta: String

        init(stateDir: String, repoID: String, worker: String) {
            repoDir = StatePaths.worktreesDir(stateDir: stateDir) + "/" + repoID
            worktree = repoDir + "/" + worker
            gitDir = repoDir + "/" + worker + ".git"
            meta = repoDir + "/" + worker + ".meta"
        }
    }

    /// When `gitDir` is a worker's git directory (`<state>/worktrees/<id>/<worker>.git` with a
    /// `<worker>.meta` beside it), the central repository's git directory recorded in that metadata.
    static func centralOfWorkerGitDir(_ gitDir: String) -> String? {
        let real = WorkspaceSys.realPath(gitDir) ?? gitDir
        guard real.hasSuffix(".git") else { return nil }
        let stem = String(real.dropLast(4))
        let worker = stem.split(separator: "/").last.map(String.init) ?? ""
        guard (try? validateWorkerName(worker)) != nil, let text = WorkspaceSys.readString(stem + ".meta") else { return nil }
        let kv = KeyValueText(parsing: text)
        guard kv["sandboxd-worktree"] == "1", kv["worker"] == worker, let repo = kv["repo"] else { return nil }
        return repo
    }

    /// The directories an objects directory's `info/alternates` lists (absolute paths only).
    static func alternates(ofObjectsDir dir: String) -> [String] {
        guard let text = WorkspaceSys.readString(dir + "/info/alternates") else { return [] }
        return text.split(separator: "\n").map(String.init).filter { $0.hasPrefix("/") }
    }

    // MARK: provision

    /// Provisions the worktree of `worker` on branch `sandboxd/<worker>` from `base` (default: the
    /// repository's HEAD), or returns the existing one. Throws when an existing worktree or branch
    /// disagrees with an explicit `base`.
    public static func provision(repo: String, worker: String, base: String? = nil,
                                 stateDir: String = StatePaths.stateDir()) throws -> WorktreeInfo {
        try validateWorkerName(worker)
        let central = try Central.open(repo)
        let paths = Paths(stateDir: stateDir, repoID: central.id, worker: worker)
        try WorkspaceSys.makeDirectories(paths.repoDir)

        if let existing = try readInfo(paths: paths) {
            guard existing.centralGitDir == central.gitDir else {
                throw SandboxError("\(paths.meta) belongs to \(existing.centralGitDir), not \(central.gitDir)")
            }
            if let base {
                let want = try central.repo.resolveCommit(base)
                if want.hex != existing.base && want.hex != existing.passed {
                    throw SandboxError(
                        "worktree '\(worker)' already exists on base \(existing.base.prefix(12)), not \(base) (\(want.short)); "
                            + "remove it first (sandboxd worktree rm \(worker) --repo \(repo))")
                }
            }
            guard WorkspaceSys.isDirectory(existing.path) else {
                throw SandboxError(
                    "worktree '\(worker)' is recorded but its directory \(existing.path) is gone; "
                        + "remove it (sandboxd worktree rm \(worker) --repo \(repo))")
            }
            try secureGitDir(existing)
            return existing
        }

        // No metadata: anything left over is from an interrupted provisioning and was never used.
        try WorkspaceSys.removeTree(paths.worktree)
        try WorkspaceSys.removeTree(paths.gitDir)
        try pruneRegistration(central: central, worker: worker, expectedPath: paths.worktree)

        // The branch: reuse it when it exists (it holds passed work), else create it at base.
        let branch = branch(for: worker)
        let baseOID: GitOID
        if let tip = try central.repo.refTarget(branch) {
            if let base {
                let want = try central.repo.resolveCommit(base)
                if want != tip {
                    throw SandboxError(
                        "branch sandboxd/\(worker) already exists at \(tip.short), not at \(base) (\(want.short)); "
                            + "pick another worker name, omit --base to continue from it, or delete the branch")
                }
            }
            baseOID = tip
        } else {
            baseOID = try central.repo.resolveCommit(base ?? "HEAD")
            if try central.repo.compareAndSwap(branch, to: baseOID, expected: nil,
                                               log: "sandboxd: worktree for \(worker)") == .lost {
                throw SandboxError("branch sandboxd/\(worker) was created concurrently; retry")
            }
        }

        // git_worktree_add: registration in <central>/worktrees/<worker>, checkout of the branch.
        var ref: OpaquePointer?
        try gitCheck(git_reference_lookup(&ref, central.repo.ptr, branch), "cannot read \(branch)")
        defer { git_reference_free(ref) }
        var opts = git_worktree_add_options()
        try gitCheck(git_worktree_add_options_init(&opts, UInt32(GIT_WORKTREE_ADD_OPTIONS_VERSION)), "worktree options")
        opts.ref = ref
        var wt: OpaquePointer?
        try gitCheck(git_worktree_add(&wt, central.repo.ptr, worker, paths.worktree, &opts),
                     "cannot add worktree \(worker) at \(paths.worktree)")
        git_worktree_free(wt)

        let info = WorktreeInfo(
            worker: worker, repoID: central.id, centralGitDir: central.gitDir, centralWorkdir: central.workdir,
            centralObjectsDir: central.objectsDir, path: paths.worktree, gitDir: paths.gitDir,
            commonDir: paths.gitDir, objectsDir: paths.gitDir + "/objects",
            registrationDir: central.gitDir + "/worktrees/" + worker, metadataPath: paths.meta,
            branch: branch, base: baseOID.hex, passed: nil, created: WorkspaceSys.now())
        try createGitDir(info, central: central)
        // The metadata file is written last: its presence means "provisioned".
        try writeInfo(info)
        return info
    }

    /// Removes git's registration of a worktree named `worker` if it is stale or ours.
    static func pruneRegistration(central: Central, worker: String, expectedPath: String) throws {
        var wt: OpaquePointer?
        let rc = git_worktree_lookup(&wt, central.repo.ptr, worker)
        if rc == GIT_ENOTFOUND.rawValue { return }
        // A registration whose files are half written also fails lookup; remove the directory then.
        if rc < 0 {
            let dir = central.gitDir + "/worktrees/" + worker
            if let gitdir = WorkspaceSys.readString(dir + "/gitdir"), !gitdir.hasPrefix(expectedPath + "/") {
                throw SandboxError("\(dir) exists and belongs to another worktree: \(gitLastErrorMessage(rc))")
            }
            try WorkspaceSys.removeTree(dir)
            return
        }
        defer { git_worktree_free(wt) }
        let path = String(cString: git_worktree_path(wt))
        let ours = path == expectedPath || path == expectedPath + "/"
        if !ours && git_worktree_validate(wt) == 0 {
            throw SandboxError(
                "the repository already has a git worktree named '\(worker)' at \(path); choose another worker name")
        }
        var popts = git_worktree_prune_options()
        try gitCheck(git_worktree_prune_options_init(&popts, UInt32(GIT_WORKTREE_PRUNE_OPTIONS_VERSION)), "prune options")
        popts.flags = GIT_WORKTREE_PRUNE_VALID.rawValue | GIT_WORKTREE_PRUNE_LOCKED.rawValue
        try gitCheck(git_worktree_prune(wt, &popts), "cannot prune worktree registration \(worker)")
    }

    /// The per-worker git directory: a copy of the central refs (as packed-refs), its own config,
    /// hooks and objects, with the central objects as alternates; then the worktree's `.git` file
    /// is pointed at it.
    static func createGitDir(_ info: WorktreeInfo, central: Central) throws {
        let g = info.gitDir
        for d in ["objects/info", "objects/pack", "refs/heads/sandboxd", "refs/tags", "hooks", "info", "logs"] {
            try WorkspaceSys.makeDirectories(g + "/" + d)
        }
        try WorkspaceSys.writeAtomically(g + "/HEAD", "ref: \(info.branch)\n")
        try WorkspaceSys.writeAtomically(g + "/config", gitConfig(worker: info.worker))
        try WorkspaceSys.writeAtomically(g + "/description", "sandboxd worker \(info.worker)\n")
        try WorkspaceSys.writeAtomically(g + "/" + info.branch, info.base + "\n")
        // A snapshot of the central branches and tags so `git log main` works inside; the lock ref and
        // the worker's own central branch are left out.
        var packed = ""
        for r in try central.repo.references() {
            guard let t = r.target, !r.name.hasPrefix("refs/sandboxd/"), r.name != info.branch,
                  r.name.hasPrefix("refs/") else { continue }
            packed += "\(t.hex) \(r.name)\n"
        }
        try WorkspaceSys.writeAtomically(g + "/packed-refs", packed)
        if let exclude = WorkspaceSys.read(central.gitDir + "/info/exclude") {
            try WorkspaceSys.writeAtomically(g + "/info/exclude", exclude)
        }
        // The index git_worktree_add wrote, so `git status` starts clean with a valid stat cache.
        if let index = WorkspaceSys.read(info.registrationDir + "/index") {
            try WorkspaceSys.writeAtomically(g + "/index", index)
        }
        try secureGitDir(info)
    }

    static func gitConfig(worker: String) -> String {
        """
        # Written by sandboxd: the git directory of worker \(worker)'s worktree. The central repository's
        # objects are read through objects/info/alternates; everything git writes stays here until
        # `sandboxd gate` checks it and imports it into the central repository.
        [core]
        \trepositoryformatversion = 0
        \tfilemode = true
        \tbare = false
        \tlogallrefupdates = true
        [user]
        \tname = \(worker)
        \temail = \(worker)@sandboxd.invalid
        [gc]
        \tauto = 0

        """
    }

    /// Re-writes the parts of the worker's git layout the host relies on (the worker can change them):
    /// the alternates file and the worktree's `.git` file.
    static func secureGitDir(_ info: WorktreeInfo) throws {
        try WorkspaceSys.makeDirectories(info.objectsDir + "/info")
        try WorkspaceSys.writeAtomically(info.objectsDir + "/info/alternates", info.centralObjectsDir + "\n")
        if WorkspaceSys.isDirectory(info.path) {
            let gitFile = info.path + "/.git"
            if WorkspaceSys.isDirectory(gitFile) { try WorkspaceSys.removeTree(gitFile) }
            try WorkspaceSys.writeAtomically(gitFile, "gitdir: \(info.gitDir)\n")
        }
    }

    // MARK: metadata

    static func writeInfo(_ info: WorktreeInfo) throws {
        var kv = KeyValueText()
        kv.add("sandboxd-worktree", "1")
        kv.add("worker", info.worker)
        kv.add("repo", info.centralGitDir)
        if let w = info.centralWorkdir { kv.add("workdir", w) }
        kv.add("branch", info.branch)
        kv.add("base", info.base)
        if let p = info.passed { kv.add("passed", p) }
        kv.add("created", String(info.created))
        try WorkspaceSys.writeAtomically(info.metadataPath, kv.text)
    }

    static func readInfo(paths: Paths) throws -> WorktreeInfo? {
        guard let text = WorkspaceSys.readString(paths.meta) else { return nil }
        let kv = KeyValueText(parsing: text)
        guard kv["sandboxd-worktree"] == "1", let worker = kv["worker"], let repo = kv["repo"],
              let base = kv["base"] else {
            throw SandboxError("\(paths.meta) is not a sandboxd worktree record")
        }
        let id = paths.repoDir.split(separator: "/").last.map(String.init) ?? ""
        return WorktreeInfo(
            worker: worker, repoID: id, centralGitDir: repo, centralWorkdir: kv["workdir"],
            centralObjectsDir: repo + "/objects", path: paths.worktree, gitDir: paths.gitDir,
            commonDir: paths.gitDir, objectsDir: paths.gitDir + "/objects",
            registrationDir: repo + "/worktrees/" + worker, metadataPath: paths.meta,
            branch: kv["branch"] ?? branch(for: worker), base: base, passed: kv["passed"],
            created: Int64(kv["created"] ?? "") ?? 0)
    }

    /// The worktree of `worker` for `repo`, if provisioned.
    public static func lookup(repo: String, worker: String, stateDir: String = StatePaths.stateDir()) throws -> WorktreeInfo? {
        try validateWorkerName(worker)
        let central = try Central.open(repo)
        return try readInfo(paths: Paths(stateDir: stateDir, repoID: central.id, worker: worker))
    }

    /// All provisioned worktrees: of one repository, or (repo nil) of every repository in the state directory.
    public static func list(repo: String? = nil, stateDir: String = StatePaths.stateDir()) throws -> [WorktreeInfo] {
        let root = StatePaths.worktreesDir(stateDir: stateDir)
        var ids: [String]
        if let repo {
            ids = [try Central.open(repo).id]
        } else {
            ids = WorkspaceSys.isDirectory(root) ? try WorkspaceSys.list(root) : []
        }
        var out: [WorktreeInfo] = []
        for id in ids {
            let dir = root + "/" + id
            guard WorkspaceSys.isDirectory(dir) else { continue }
            for name in try WorkspaceSys.list(dir) where name.hasSuffix(".meta") {
                let worker = String(name.dropLast(5))
                if let info = try? readInfo(paths: Paths(stateDir: stateDir, repoID: id, worker: worker)) {
                    out.append(info)
                }
            }
        }
        return out
    }

    // MARK: status

    /// What the worktree holds that has not passed the gate.
    public static func status(_ info: WorktreeInfo) -> WorktreeStatus {
        var st = WorktreeStatus(head: nil, uncommitted: [], unpassedCommits: 0,
                                missing: !WorkspaceSys.isDirectory(info.path), problem: nil)
        do {
            guard WorkspaceSys.isDirectory(info.gitDir) else { return st }
            // Best effort: a reader who cannot write the state directory still gets a status.
            try? secureGitDir(info)
            let repo = try GitRepo.openBare(info.gitDir)
            let centralODB = try GitODB.open(objectsDir: info.centralObjectsDir)
            let odb = try repo.odb()
            st.head = try repo.refTarget("HEAD")?.hex
            // Commits any of the worker's refs (or HEAD) reach that the central repository lacks.
            var tips = try repo.references().compactMap(\.target)
            if let h = st.head.flatMap({ GitOID(hex: $0) }) { tips.append(h) }
            var seen = Set<GitOID>()
            var stack = tips.filter { !centralODB.has($0) }
            while let oid = stack.popLast() {
                if seen.contains(oid) || centralODB.has(oid) { continue }
                seen.insert(oid)
                let obj = try odb.read(oid)
                if obj.type == GIT_OBJECT_COMMIT {
                    st.unpassedCommits += 1
                    stack.append(contentsOf: GitObjects.children(of: obj).dropFirst())
                } else if obj.type == GIT_OBJECT_TAG {
                    stack.append(contentsOf: GitObjects.children(of: obj))
                }
            }
            if !st.missing {
                try repo.setWorkdir(info.path)
                st.uncommitted = try uncommittedPaths(repo)
            }
        } catch {
            st.problem = "\(error)"
        }
        return st
    }

    static func uncommittedPaths(_ repo: GitRepo) throws -> [String] {
        var opts = git_status_options()
        try gitCheck(git_status_options_init(&opts, UInt32(GIT_STATUS_OPTIONS_VERSION)), "status options")
        opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR
        opts.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED.rawValue | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS.rawValue
            | GIT_STATUS_OPT_EXCLUDE_SUBMODULES.rawValue
        var list: OpaquePointer?
        try gitCheck(git_status_list_new(&list, repo.ptr, &opts), "cannot read the worktree's status")
        defer { git_status_list_free(list) }
        var out: [String] = []
        for i in 0..<git_status_list_entrycount(list) {
            guard let e = git_status_byindex(list, i) else { continue }
            let delta = e.pointee.index_to_workdir ?? e.pointee.head_to_index
            if let d = delta, let p = d.pointee.new_file.path ?? d.pointee.old_file.path {
                out.append(String(cString: p))
            }
        }
        return out
    }

    // MARK: removal

    /// Removes a worker's worktree, its git directory and metadata, and git's registration. Refuses
    /// (exit 1) when it holds commits or changes that have not passed the gate, unless `force`.
    /// The central branch is deleted only when it holds nothing the gate passed.
    public static func remove(repo: String, worker: String, force: Bool = false,
                              stateDir: String = StatePaths.stateDir()) throws -> WorktreeRemoval {
        try validateWorkerName(worker)
        let central = try Central.open(repo)
        let paths = Paths(stateDir: stateDir, repoID: central.id, worker: worker)
        guard let info = try readInfo(paths: paths) else {
            throw SandboxError("no sandboxd worktree '\(worker)' for \(central.workdir ?? central.gitDir)", exitCode: 1)
        }
        let st = status(info)
        if st.hasUnpassedWork && !force {
            throw SandboxError(
                "refusing to remove worktree '\(worker)' at \(info.path): it holds \(st.summary). "
                    + "Run `sandboxd gate --repo \(repo) --worker \(worker)` to bring the work back, or pass --force to discard it.",
                exitCode: 1)
        }
        return try removeUnchecked(info, central: central, paths: paths, discarded: st)
    }

    static func removeUnchecked(_ info: WorktreeInfo, central: Central, paths: Paths,
                                discarded: WorktreeStatus) throws -> WorktreeRemoval {
        try WorkspaceSys.removeTree(info.path)
        try WorkspaceSys.removeTree(info.gitDir)
        try pruneRegistration(central: central, worker: info.worker, expectedPath: info.path)
        var kept = true
        if info.passed == nil, let base = GitOID(hex: info.base) {
            kept = !(try central.repo.deleteRef(info.branch, expected: base))
            if kept, try central.repo.refTarget(info.branch) == nil { kept = false }
        }
        try WorkspaceSys.removeTree(info.metadataPath)
        return WorktreeRemoval(worker: info.worker, path: info.path,
                               discarded: discarded.hasUnpassedWork ? discarded : WorktreeStatus(
                                   head: discarded.head, uncommitted: [], unpassedCommits: 0, missing: discarded.missing, problem: nil),
                               branchKept: kept, branch: info.branch)
    }

    /// The outcome of `prune`.
    public struct PruneResult: Sendable, Equatable {
        public var removed: [WorktreeRemoval] = []
        /// Worktrees kept, with the reason.
        public var kept: [(worker: String, reason: String)] = []
        public static func == (a: PruneResult, b: PruneResult) -> Bool {
            a.removed == b.removed && a.kept.map { $0.worker + $0.reason } == b.kept.map { $0.worker + $0.reason }
        }
    }

    /// Removes every worktree of `repo` that holds nothing unpassed and whose worker holds no live
    /// lock (its run is presumably over), and stale registrations. With `force`, removes them all.
    public static func prune(repo: String, force: Bool = false, stateDir: String = StatePaths.stateDir()) throws -> PruneResult {
        let central = try Central.open(repo)
        var result = PruneResult()
        let now = WorkspaceSys.now()
        let claims = (try? LockStore(repo: repo).list()) ?? []
        for info in try list(repo: repo, stateDir: stateDir) {
            let st = status(info)
            if !force {
                if st.hasUnpassedWork {
                    result.kept.append((info.worker, st.summary))
                    continue
                }
                let live = claims.filter { $0.worker == info.worker && !$0.isExpired(now: now) }
                if !live.isEmpty {
                    result.kept.append((info.worker, "holds \(live.count) unexpired lock\(live.count == 1 ? "" : "s") (still running?)"))
                    continue
                }
            }
            let paths = Paths(stateDir: stateDir, repoID: central.id, worker: info.worker)
            result.removed.append(try removeUnchecked(info, central: central, paths: paths, discarded: st))
        }
        // Registrations of sandboxd worktrees whose directories are gone.
        let repoDir = StatePaths.worktreesDir(stateDir: stateDir) + "/" + central.id + "/"
        var names = git_strarray()
        if git_worktree_list(&names, central.repo.ptr) == 0 {
            defer { git_strarray_dispose(&names) }
            for i in 0..<names.count {
                guard let cname = names.strings[i] else { continue }
                let name = String(cString: cname)
                var wt: OpaquePointer?
                guard git_worktree_lookup(&wt, central.repo.ptr, name) == 0 else { continue }
                defer { git_worktree_free(wt) }
                let path = String(cString: git_worktree_path(wt))
                if path.hasPrefix(repoDir) && !WorkspaceSys.exists(path) {
                    var popts = git_worktree_prune_options()
                    git_worktree_prune_options_init(&popts, UInt32(GIT_WORKTREE_PRUNE_OPTIONS_VERSION))
                    popts.flags = GIT_WORKTREE_PRUNE_LOCKED.rawValue
                    _ = git_worktree_prune(wt, &popts)
                }
            }
        }
        return result
    }

    /// Records that `commit` passed the gate.
    static func recordPassed(_ info: WorktreeInfo, commit: GitOID) throws -> WorktreeInfo {
        var updated = info
        updated.passed = commit.hex
        try writeInfo(updated)
        return updated
    }
}
