import Glibc

/// A saved state of a sandbox: its root changes, HOME and workdir, and for a
/// worker's sandbox its private git directory (commits, branch tip, HEAD, index).
///
/// Copies are made with FICLONE (reflinks: shared extents, copy-on-write)
/// where the file system supports it (btrfs, XFS with reflink, bcachefs),
/// and as real copies (copy_file_range) elsewhere, e.g. ext4. Hard links
/// would be cheaper still but share the inode: a later in-place write by the
/// sandbox (an editor saving, `pip` rewriting a RECORD file) would change the
/// checkpoint too, so they are not used.
public struct Checkpoint: Sendable, Equatable {
    public var id: Int64
    public var label: String?
    public var created: String
    public var files: Int
    public var bytes: UInt64
    public var reflinked: Int
    public var seconds: Double

    public var json: JSON {
        .object([
            ("id", .int(id)), ("label", label.map(JSON.string) ?? .null), ("created", .string(created)),
            ("files", .int(Int64(files))), ("bytes", .uint(bytes)), ("reflinked_files", .int(Int64(reflinked))),
            ("seconds", .double(seconds)),
        ])
    }

    init?(json: JSON) {
        guard let id = json["id"]?.intValue, let created = json["created"]?.stringValue else { return nil }
        self.id = id
        label = json["label"]?.stringValue
        self.created = created
        files = Int(json["files"]?.intValue ?? 0)
        bytes = UInt64(clamping: json["bytes"]?.intValue ?? 0)
        reflinked = Int(json["reflinked_files"]?.intValue ?? 0)
        seconds = json["seconds"]?.doubleValue ?? 0
    }

    init(id: Int64, label: String?, created: String, files: Int, bytes: UInt64, reflinked: Int, seconds: Double) {
        self.id = id
        self.label = label
        self.created = created
        self.files = files
        self.bytes = bytes
        self.reflinked = reflinked
        self.seconds = seconds
    }
}

extension SandboxStore {
    /// The checkpoints of a sandbox, oldest first (no lock needed: they appear by rename).
    public func checkpoints(_ name: String) throws(SandboxError) -> [Checkpoint] {
        _ = try load(name)
        return Self.checkpoints(in: paths(name))
    }

    static func checkpoints(in p: SandboxPaths) -> [Checkpoint] {
        FileSys.list(p.checkpoints).compactMap { entry -> Checkpoint? in
            guard !entry.hasPrefix("."), let bytes = try? FileSys.read(p.checkpoints + "/" + entry + "/checkpoint.json"),
                  let json = try? JSONParser.parse(bytes) else { return nil }
            return Checkpoint(json: json)
        }.sorted { $0.id < $1.id }
    }
}

extension SandboxSession {
    /// The parts of the state a checkpoint holds: (name in the checkpoint, live path).
    var checkpointAreas: [(String, String)] {
        var areas = [("root", paths.upper), ("home", paths.home), ("workdir", workdir)]
        if let g = workerGitDir { areas.append(("gitdir", g)) }
        return areas
    }

    /// A worker's private git directory (`<worker>.git` beside the worktree, docs/WORKSPACES.md).
    /// Copied whole: its objects are the worker's unpassed commits, so the checkpoint keeps them
    /// alive whatever the worker does to its refs or `git gc`, and nothing is added to any
    /// repository's refs. Derived from the layout, not from the worktree's `.git` file, which
    /// the worker can rewrite.
    public var workerGitDir: String? {
        manifest.repository == nil ? nil : workdir + ".git"
    }

    public func checkpoints() -> [Checkpoint] { SandboxStore.checkpoints(in: paths) }

    /// Copies root changes, HOME and workdir into `checkpoints/<id>/`: built
    /// in a hidden directory, flushed, then renamed into place.
    public func checkpoint(label: String?, workflow: String) throws(SandboxError) -> Checkpoint {
        if let label {
            guard !label.isEmpty, label.count <= 200, !label.allSatisfy(\.isNumber),
                  label.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
                throw SandboxError("checkpoint --label '\(label)': use 1-200 printable characters, not only digits (those are checkpoint ids)")
            }
            if checkpoints().contains(where: { $0.label == label }) {
                throw SandboxError("sandbox \(name) already has a checkpoint labelled '\(label)'; pick another label")
            }
        }
        let start = Clock.monotonic()
        let id = (checkpoints().map(\.id).max() ?? 0) + 1
        let staging = paths.checkpoints + "/.tmp-\(getpid())-\(id)"
        try FileSys.removeTree(staging)
        try FileSys.makeDirectory(paths.checkpoints, mode: 0o700)
        var total = FileSys.CopyStats()
        do throws(SandboxError) {
            try FileSys.makeDirectory(staging, mode: 0o700)
            for (area, live) in checkpointAreas {
                guard FileSys.exists(live) else { continue }
                let s = try FileSys.copyTree(live, staging + "/" + area)
                total.files += s.files + s.symlinks + s.others + s.hardLinks
                total.bytes += s.bytes
                total.reflinked += s.reflinked
            }
            let cp = Checkpoint(id: id, label: label, created: Clock.iso(), files: total.files, bytes: total.bytes,
                                reflinked: total.reflinked, seconds: Clock.monotonic() - start)
            try writeFileAtomically(staging + "/checkpoint.json", Array((cp.json.rendered() + "\n").utf8))
            FileSys.syncFileSystem(of: staging)
            try FileSys.rename(staging, paths.checkpoints + "/\(id)")
            try record("checkpoint", workflow: workflow, [("checkpoint", .int(id)), ("label", label.map(JSON.string) ?? .null),
                                                           ("files", .int(Int64(cp.files))), ("bytes", .uint(cp.bytes))])
            try save()
            return cp
        } catch {
            try? FileSys.removeTree(staging)
            throw error
        }
    }

    /// Finds a checkpoint by id or label.
    public func findCheckpoint(_ ref: String) throws(SandboxError) -> Checkpoint {
        let all = checkpoints()
        if let id = Int64(ref), let c = all.first(where: { $0.id == id }) { return c }
        if let c = all.first(where: { $0.label == ref }) { return c }
        let known = all.map { c in c.label.map { "\(c.id) (\($0))" } ?? "\(c.id)" }
        throw SandboxError("sandbox \(name) has no checkpoint '\(ref)'" + (known.isEmpty ? " (it has none)" : "; it has: \(known.joined(separator: ", "))"))
    }

    /// Restores root changes, HOME and workdir exactly as they were at the
    /// checkpoint (which stays, for another rewind). Only what differs is
    /// touched: files changed since are replaced, files added are removed,
    /// files deleted are copied back (see `FileSys.syncTree`).
    ///
    /// Crash-safe: `rewind.json` names the checkpoint before anything
    /// changes, and is removed when every area matches it. A sandboxd killed
    /// in between leaves the journal; the next session that takes the lock
    /// (exec, list, inspect...) runs the same sync again, which finishes it.
    ///
    /// `check` sees the checkpoint's directory before anything changes and
    /// may refuse (sandboxd-ext checks a worker's checkpoint against the gate).
    public func rewind(to ref: String, workflow: String,
                       check: (Checkpoint, String) throws(SandboxError) -> Void = { _, _ in }) throws(SandboxError) -> Checkpoint {
        let cp = try findCheckpoint(ref)
        try check(cp, paths.checkpoints + "/\(cp.id)")
        let journal = JSON.object([("checkpoint", .int(cp.id)), ("label", cp.label.map(JSON.string) ?? .null)])
        try writeFileAtomically(paths.rewindJournal, journal.bytes() + [0x0A], mode: 0o600)
        try applyRewind(cp.id)
        try record("rewind", workflow: workflow, [("checkpoint", .int(cp.id)), ("label", cp.label.map(JSON.string) ?? .null)])
        try save()
        return cp
    }

    /// Syncs every area from checkpoint `id`, clears overlayfs's scratch
    /// space, flushes, and removes the journal.
    func applyRewind(_ id: Int64) throws(SandboxError) {
        let source = paths.checkpoints + "/\(id)"
        guard FileSys.isDirectory(source) else {
            throw SandboxError("\(paths.rewindJournal) names checkpoint \(id), which is gone; the sandbox may be half-rewound: inspect it, then delete the journal")
        }
        for (area, live) in checkpointAreas {
            if FileSys.exists(source + "/" + area) {
                _ = try FileSys.syncTree(source + "/" + area, live)
            } else if area == "gitdir" {
                // A checkpoint from before git state was captured: the git directory stays as it is.
                continue
            } else {
                try FileSys.makeDirectory(live, mode: 0o755)
            }
        }
        // overlayfs's scratch space must not hold state from before the rewind.
        for layer in FileSys.list(paths.work) { try FileSys.removeTree(paths.work + "/" + layer) }
        FileSys.syncFileSystem(of: paths.dir)
        guard unlink(paths.rewindJournal) == 0 || errno == ENOENT else {
            throw SandboxError("cannot remove \(paths.rewindJournal): \(errnoString())")
        }
        FileSys.fsyncDirectory(paths.dir)
    }

    /// At session start: finish a rewind that was cut short.
    func recoverRewind(workflow: String) throws(SandboxError) {
        guard let bytes = try FileSys.read(paths.rewindJournal) else { return }
        // The journal is written atomically, so a damaged one was edited: leave it for a person to look at.
        guard let journal = try? JSONParser.parse(bytes), let id = journal["checkpoint"]?.intValue else {
            throw SandboxError("\(paths.rewindJournal) is damaged; the sandbox may be half-rewound. Inspect it, then delete it to use the sandbox")
        }
        try applyRewind(id)
        try record("rewind.completed", workflow: workflow, [("checkpoint", .int(id))])
        try save()
    }
}
