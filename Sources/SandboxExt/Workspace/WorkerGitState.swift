import CGit2
import Glibc

/// A worker sandbox's git state in checkpoints and archives.
///
/// Both carry the worker's private git directory (`<worker>.git`) whole, as a
/// file tree: the objects the worker wrote (its unpassed commits), its branch
/// tip, HEAD, index and reflogs, byte for byte. Checkpoints copy it like the
/// other areas, so `rewind` restores it with the same idempotent tree sync
/// (a rewind cut short is finished by the next session even in the launcher,
/// which does not link libgit2). Archives carry it with the worktree's
/// metadata; import verifies every object by its id, checks that the
/// worker's refs are complete on top of the central repository, and
/// re-provisions the worktree there before installing the state.
public enum WorkerGitState {
    /// The metadata file's name in an archive.
    public static let metaEntry = "worktree.meta"

    // MARK: rewind

    /// Refuses to rewind a worker's sandbox to a checkpoint whose HEAD does not
    /// descend from the commit that last passed the gate: the central branch
    /// (and `passed` in the metadata) stays at that commit, so the worker
    /// would be behind it and the gate would reject everything it does next.
    public static func checkRewind(sandbox: String, repository r: SandboxManifest.Repository, checkpoint cp: Checkpoint,
                                   directory: String, stateDir: String) throws(SandboxError) {
        let copy = directory + "/gitdir"
        guard FileSys.isDirectory(copy) else { return }
        try converting {
            guard let info = try Workspace.lookup(repo: r.path, worker: r.worker, stateDir: stateDir),
                  let passed = info.passed.flatMap(GitOID.init(hex:)) else { return }
            let repo = try GitRepo.openBare(copy)
            try repo.odb().addAlternate(info.centralObjectsDir)
            guard let head = try repo.refTarget("HEAD") else {
                throw SandboxError("sandbox \(sandbox): checkpoint \(cp.id) has no HEAD commit in its git directory \(copy); it cannot be rewound to")
            }
            guard try repo.isDescendant(head, ofOrEqual: passed) else {
                throw SandboxError(
                    "sandbox \(sandbox): checkpoint \(cp.id) is at commit \(head.short), before \(passed.short), which passed the gate "
                        + "onto \(info.branch); rewinding would put worker \(r.worker) behind its delivered branch and the gate would "
                        + "refuse its later work. Rewind to a checkpoint taken after that gate, or take a new checkpoint")
            }
        }
    }

    // MARK: import

    /// Where an imported worker sandbox was attached.
    public struct Attached: Sendable {
        public var repository: SandboxManifest.Repository
        public var worktree: String
        public var stateDir: String
    }

    /// Attaches the git state extracted into `staging` (`gitdir/`, `workdir/`,
    /// `worktree.meta`, `checkpoints/N/gitdir`) to the central repository
    /// `repo` (default: the one recorded): checks everything first, then
    /// provisions the worker's worktree and makes its git directory and files
    /// those of the archive. Nothing outside `staging` is written unless every
    /// check passed; a failure after that removes the new worktree.
    static func attach(staging: String, sandbox: String, recorded r: SandboxManifest.Repository, repo: String?,
                       worker: String?, stateDir: String) throws(SandboxError) -> Attached {
        let repoPath = repo ?? r.path
        let name = worker ?? r.worker
        return try converting {
            try Workspace.validateWorkerName(name)
            guard let metaText = WorkspaceSys.readString(staging + "/" + metaEntry) else {
                throw SandboxError("refusing the archive: it carries a git directory but no \(metaEntry)")
            }
            let meta = KeyValueText(parsing: metaText)
            guard let base = meta["base"].flatMap(GitOID.init(hex:)) else {
                throw SandboxError("refusing the archive: \(metaEntry) has no valid base commit")
            }
            let passed = try meta["passed"].map { (hex: String) throws -> GitOID in
                guard let o = GitOID(hex: hex) else { throw SandboxError("refusing the archive: \(metaEntry) has an invalid passed commit") }
                return o
            }
            let central: Workspace.Central
            do { central = try Workspace.Central.open(repoPath) } catch {
                throw SandboxError(
                    "import: sandbox \(sandbox) worked in a worktree of \(repoPath) (worker \(r.worker)), which is not a git repository here "
                        + "(\(error)); pass --repo PATH naming that repository or a clone holding commit \(base.short)")
            }
            if let existing = try Workspace.lookup(repo: repoPath, worker: name, stateDir: stateDir) {
                throw SandboxError(
                    "import: worker \(name) already has a worktree of \(repoPath) at \(existing.path); pass --worker NEW to import "
                        + "under another worker name, or remove it first (`sandboxd worktree rm \(name) --repo \(repoPath)`)")
            }
            let centralODB = try GitODB.open(objectsDir: central.objectsDir)
            for needed in [base] + (passed.map { [$0] } ?? []) where !centralODB.has(needed) {
                throw SandboxError(
                    "import: \(repoPath) lacks commit \(needed.short), which worker \(r.worker)'s work builds on; fetch it there, "
                        + "or pass --repo PATH naming a clone that has it")
            }
            try verify(gitDir: staging + "/gitdir", centralObjects: central.objectsDir)
            let checkpointCopies = FileSys.list(staging + "/checkpoints").sorted().map { staging + "/checkpoints/" + $0 + "/gitdir" }
                .filter(FileSys.isDirectory)
            for copy in checkpointCopies { try verify(gitDir: copy, centralObjects: central.objectsDir) }

            var info: WorktreeInfo
            do { info = try Workspace.provision(repo: repoPath, worker: name, base: (passed ?? base).hex, stateDir: stateDir) } catch {
                throw SandboxError("import: cannot provision worker \(name)'s worktree of \(repoPath): \(error); pass --worker NEW to attach it under another worker name")
            }
            do {
                try install(staging + "/gitdir", into: info.gitDir)
                try install(staging + "/workdir", into: info.path)
                try WorkspaceSys.removeTree(staging + "/gitdir")
                try WorkspaceSys.removeTree(staging + "/workdir")
                for copy in checkpointCopies + [info.gitDir] { try adopt(gitDir: copy, info: info) }
                for copy in checkpointCopies {
                    let files = String(copy.dropLast("gitdir".count)) + "workdir"
                    if FileSys.isDirectory(files) { try WorkspaceSys.writeAtomically(files + "/.git", "gitdir: \(info.gitDir)\n") }
                }
                info.base = base.hex
                info.passed = passed?.hex
                try Workspace.writeInfo(info)
                try Workspace.secureGitDir(info)
            } catch {
                _ = try? Workspace.remove(repo: repoPath, worker: name, force: true, stateDir: stateDir)
                throw error
            }
            return Attached(repository: .init(path: repoPath, worker: name, base: base.hex), worktree: info.path, stateDir: stateDir)
        }
    }

    /// Undoes `attach` (the import failed after it).
    static func detach(_ a: Attached) {
        _ = try? Workspace.remove(repo: a.repository.path, worker: a.repository.worker, force: true, stateDir: a.stateDir)
    }

    /// Checks an archived git directory before anything of it is used: HEAD
    /// names a valid branch or a commit; every object it holds matches its id
    /// (libgit2 verifies the hash on read); every ref is a valid name whose
    /// history is complete on top of the central objects.
    static func verify(gitDir: String, centralObjects: String) throws {
        func hostile(_ why: String) -> SandboxError { SandboxError("refusing the archive: \(gitDir): \(why)") }
        guard let head = WorkspaceSys.readString(gitDir + "/HEAD")?.split(separator: "\n").first.map(String.init) else {
            throw hostile("no HEAD")
        }
        if head.hasPrefix("ref: ") {
            guard validRefName(String(head.dropFirst(5))) else { throw hostile("HEAD names an invalid reference '\(head.prefix(200))'") }
        } else if GitOID(hex: head) == nil {
            throw hostile("HEAD is neither a reference nor a commit id")
        }
        // The archive's alternates would make libgit2 read wherever they point: only the central objects are used.
        try WorkspaceSys.removeTree(gitDir + "/objects/info/alternates")
        let own = try GitODB.open(objectsDir: gitDir + "/objects")
        for oid in try own.ids() {
            do { _ = try own.read(oid) } catch { throw hostile("object \(oid.short) does not verify (\(error))") }
        }
        let repo = try GitRepo.openBare(gitDir)
        let odb = try repo.odb()
        try odb.addAlternate(centralObjects)
        let central = try GitODB.open(objectsDir: centralObjects)
        var tips: [GitOID] = []
        for ref in try repo.references() {
            guard validRefName(ref.name) else { throw hostile("invalid reference name '\(ref.name.prefix(200))'") }
            if let t = ref.target { tips.append(t) }
        }
        if let h = try? repo.refTarget("HEAD") { tips.append(h) }
        var seen = Set<GitOID>()
        var stack = tips
        while let oid = stack.popLast() {
            if seen.contains(oid) || central.has(oid) { continue }
            seen.insert(oid)
            guard odb.has(oid) else { throw hostile("object \(oid.short), reachable from its refs, is missing") }
            stack.append(contentsOf: GitObjects.children(of: try odb.read(oid)))
        }
    }

    static func validRefName(_ name: String) -> Bool {
        var valid: Int32 = 0
        return name.hasPrefix("refs/") && git_reference_name_is_valid(&valid, name) == 0 && valid == 1
    }

    /// Makes `destination` (just provisioned) exactly the archived tree.
    static func install(_ source: String, into destination: String) throws {
        guard FileSys.isDirectory(source) else { return }
        _ = try FileSys.syncTree(source, destination)
    }

    /// The parts of an archived git directory the host writes itself rather
    /// than trust: the config (an archive's could set core.fsmonitor or hooks
    /// for whoever runs git there) and the alternates (the central objects here).
    static func adopt(gitDir: String, info: WorktreeInfo) throws {
        try WorkspaceSys.writeAtomically(gitDir + "/config", Workspace.gitConfig(worker: info.worker))
        try WorkspaceSys.makeDirectories(gitDir + "/objects/info")
        try WorkspaceSys.writeAtomically(gitDir + "/objects/info/alternates", info.centralObjectsDir + "\n")
    }

    /// Runs libgit2-based code (which throws untyped) under a typed-throws API.
    static func converting<T>(_ body: () throws -> T) throws(SandboxError) -> T {
        do { return try body() } catch let e as SandboxError { throw e } catch { throw SandboxError("\(error)") }
    }
}

extension GitODB {
    /// Every object id this database holds (its alternates included).
    func ids() throws -> [GitOID] {
        final class Box { var ids: [GitOID] = [] }
        let box = Box()
        let rc = git_odb_foreach(ptr, { oid, payload in
            Unmanaged<Box>.fromOpaque(payload!).takeUnretainedValue().ids.append(GitOID(oid!))
            return 0
        }, Unmanaged.passUnretained(box).toOpaque())
        try gitCheck(rc, "cannot list objects")
        return box.ids
    }

    /// Reads objects from `objectsDir` too (without following its own alternates file).
    func addAlternate(_ objectsDir: String) throws {
        try gitCheck(git_odb_add_disk_alternate(ptr, objectsDir), "cannot add object directory \(objectsDir)")
    }
}
