import CGit2
import Glibc

/// What a worker's change must satisfy to come back into the central repository.
public struct GateRules: Sendable, Equatable {
    /// Most lines added plus removed (text files).
    public var maxLines: UInt64
    /// Most bytes: the added and removed lines of text files plus the size of new binary content.
    public var maxBytes: UInt64
    /// Patterns no change may touch (added, modified or deleted).
    public var forbidden: [String]
    /// Patterns of test files: existing ones may not be modified or deleted; new ones are fine.
    public var tests: [String]

    public init(maxLines: UInt64, maxBytes: UInt64, forbidden: [String], tests: [String]) {
        self.maxLines = maxLines
        self.maxBytes = maxBytes
        self.forbidden = forbidden
        self.tests = tests
    }

    /// The rules of a profile's `[gate]` table (default: the built-in profile defaults).
    public init(_ gate: Profile.Gate = Profile.Gate()) {
        self.init(maxLines: gate.maxLines, maxBytes: gate.maxBytes, forbidden: gate.forbidden, tests: gate.tests)
    }

    public var json: JSON {
        .object([
            ("maxLines", .int(Int64(clamping: maxLines))), ("maxBytes", .int(Int64(clamping: maxBytes))),
            ("forbidden", .array(forbidden.map { .string($0) })), ("tests", .array(tests.map { .string($0) })),
        ])
    }
}

/// One broken rule.
public struct GateViolation: Sendable, Equatable {
    public enum Rule: String, Sendable, CaseIterable {
        case maxLines = "max-lines"
        case maxBytes = "max-bytes"
        case forbiddenPath = "forbidden-path"
        case testModified = "test-modified"
        case testDeleted = "test-deleted"
        case unclaimedPath = "unclaimed-path"
        /// A path with a `.git` component: it would write into a repository's git directory on checkout.
        case gitInternalPath = "git-internal-path"
        /// The worker's history does not continue the central branch.
        case history = "history"
        /// Unresolved merge conflicts or unreadable files in the worktree.
        case unreadable = "unreadable"
    }
    public var rule: Rule
    /// The path concerned; nil for rules about the whole change.
    public var path: String?
    /// The worker's commit where it was found; nil for the change as a whole (commits plus uncommitted work).
    public var commit: String?
    public var message: String

    public var json: JSON {
        .object([("rule", .string(rule.rawValue)), ("path", .str(path)), ("commit", .str(commit)), ("message", .string(message))])
    }
}

/// One changed file of the change as a whole.
public struct GateChange: Sendable, Equatable {
    /// added, modified, deleted, typechange
    public var status: String
    public var path: String
    public var linesAdded: UInt64
    public var linesRemoved: UInt64
    public var bytes: UInt64
    public var binary: Bool

    public var json: JSON {
        .object([("status", .string(status)), ("path", .string(path)), ("linesAdded", .int(Int64(clamping: linesAdded))),
                 ("linesRemoved", .int(Int64(clamping: linesRemoved))), ("bytes", .int(Int64(clamping: bytes))),
                 ("binary", .bool(binary))])
    }
}

/// The outcome of `Gate.run`.
public struct GateReport: Sendable, Equatable {
    public var worker: String
    public var run: String
    public var repo: String
    public var worktree: String
    public var branch: String
    /// What the change was compared against (the last passed commit, else the worktree's base).
    public var base: String
    /// The worker's HEAD.
    public var head: String?
    /// On pass: the commit the central branch now points at.
    public var result: String?
    /// On pass: whether the gate committed uncommitted changes (as `result`).
    public var committedUncommitted: Bool
    public var objectsImported: Int
    public var claims: [String]
    /// The worker's commits the central repository did not have, each checked on its own.
    public var commitsChecked: Int
    public var changes: [GateChange]
    public var lines: UInt64
    public var bytes: UInt64
    public var violations: [GateViolation]
    public var rules: GateRules

    public var passed: Bool { violations.isEmpty }

    public var json: JSON {
        .object([
            ("passed", .bool(passed)), ("worker", .string(worker)), ("run", .string(run)), ("repo", .string(repo)),
            ("worktree", .string(worktree)), ("branch", .string(branch)), ("base", .string(base)), ("head", .str(head)),
            ("result", .str(result)), ("committedUncommitted", .bool(committedUncommitted)),
            ("objectsImported", .int(Int64(objectsImported))), ("claims", .array(claims.map { .string($0) })),
            ("commitsChecked", .int(Int64(commitsChecked))),
            ("stats", .object([("files", .int(Int64(changes.count))), ("lines", .int(Int64(clamping: lines))),
                               ("bytes", .int(Int64(clamping: bytes)))])),
            ("violations", .array(violations.map(\.json))), ("changes", .array(changes.map(\.json))),
            ("rules", rules.json),
        ])
    }

    /// The human-readable report: a verdict line, then one line per violation (rule, path, why).
    public var text: String {
        let stats = "\(changes.count) file\(changes.count == 1 ? "" : "s"), \(lines) line\(lines == 1 ? "" : "s"), \(WorkspaceText.bytes(bytes))"
        var out = "gate: \(passed ? "PASS" : "FAIL")  worker \(worker)  base \(base.prefix(12))  \(stats)\n"
        if passed {
            if let result {
                if result == base && !committedUncommitted {
                    out += "  no changes; \(branch) stays at \(result.prefix(12))\n"
                } else {
                    out += "  \(branch) -> \(result.prefix(12))"
                    if committedUncommitted { out += " (uncommitted changes committed by the gate)" }
                    out += "; \(objectsImported) object\(objectsImported == 1 ? "" : "s") imported\n"
                }
            }
        } else {
            let width = min(48, violations.map { ($0.path ?? "(whole change)").count }.max() ?? 0)
            for v in violations {
                out += "  " + WorkspaceText.pad(v.rule.rawValue, 18) + WorkspaceText.pad(v.path ?? "(whole change)", width)
                    + "  " + v.message + (v.commit.map { " [commit \($0.prefix(12))]" } ?? "") + "\n"
            }
            out += "  nothing in the central repository was changed\n"
        }
        return out
    }
}

/// The gate: checks a worker's work against the rules and, only when it passes, brings it into
/// the central repository (objects imported, `refs/heads/sandboxd/<worker>` moved to it).
public enum Gate {
    /// Examines `worker`'s worktree of `repo`: its commits the central repository lacks (each on
    /// its own) and the change as a whole against the gate base, uncommitted and untracked files
    /// included. The worker's claims are its locks on `refs/sandboxd/locks` (fetched from `remote`
    /// when given); with claims, only claimed paths may change. On failure nothing in the central
    /// repository changes.
    ///
    /// `claims` overrides the lock ref: a launcher that acquired claims for a run passes them here,
    /// so they are enforced even if the locks were released or reclaimed in the meantime. An empty
    /// list means "no claim rule"; nil means "the worker's locks on the lock ref".
    public static func run(repo: String, worker: String, rules: GateRules = GateRules(), run: String? = nil,
                           claims: [String]? = nil, remote: String? = nil,
                           stateDir: String = StatePaths.stateDir()) throws -> GateReport {
        try Workspace.validateWorkerName(worker)
        let central = try Workspace.Central.open(repo)
        guard var info = try Workspace.readInfo(paths: .init(stateDir: stateDir, repoID: central.id, worker: worker)) else {
            throw SandboxError("no sandboxd worktree for worker '\(worker)' in \(central.workdir ?? central.gitDir)")
        }
        guard WorkspaceSys.isDirectory(info.path) else {
            throw SandboxError("the work tree of worker '\(worker)' (\(info.path)) is missing")
        }
        let runLabel = run ?? "unnamed run, gated at \(WorkspaceSys.now())"
        let forbidden = try rules.forbidden.map { try PathPattern($0) }
        let tests = try rules.tests.map { try PathPattern($0) }
        let claimPatterns = try (claims ?? LockStore(repo: repo, remote: remote).patterns(of: worker)).map { try PathPattern($0) }
        let claimTexts = claimPatterns.map(\.text)

        // The worker can rewrite its alternates and .git file; restore them before trusting either.
        try Workspace.secureGitDir(info)
        let shadow = try GitRepo.openBare(info.gitDir)
        try shadow.setWorkdir(info.path)
        let shadowODB = try shadow.odb()
        let centralODB = try central.repo.odb()
        guard let base = GitOID(hex: info.gateBase) else { throw SandboxError("\(info.metadataPath): bad base") }
        let centralTip = try central.repo.refTarget(info.branch)
        guard let head = try shadow.refTarget("HEAD") else {
            throw SandboxError("worker '\(worker)': HEAD of \(info.gitDir) does not point at a commit")
        }

        var report = GateReport(
            worker: worker, run: runLabel, repo: central.gitDir, worktree: info.path, branch: info.branch, base: base.hex,
            head: head.hex, result: nil, committedUncommitted: false, objectsImported: 0, claims: claimTexts,
            commitsChecked: 0, changes: [], lines: 0, bytes: 0, violations: [], rules: rules)
        let checker = Checker(rules: rules, forbidden: forbidden, tests: tests, claims: claimPatterns, worker: worker)

        // 1. The work tree (with index and untracked files) against the base: the whole change as the worker left it.
        let baseTree = try shadow.commitInfo(base).tree
        let wd = try diffWorkdir(shadow, against: baseTree, maxSize: rules.maxBytes)
        checker.check(wd, commit: nil)
        report.changes = wd.map(\.change)

        // 2. Each commit the central repository does not have, against its first parent.
        var history: [GitOID] = []
        var seen = Set<GitOID>()
        var stack = [head]
        while let c = stack.popLast() {
            if seen.contains(c) || centralODB.has(c) { continue }
            seen.insert(c)
            history.append(c)
            stack.append(contentsOf: try shadow.commitInfo(c).parents)
        }
        report.commitsChecked = history.count
        for c in history {
            let ci = try shadow.commitInfo(c)
            let parentTree = try ci.parents.first.map { try shadow.commitInfo($0).tree }
            checker.check(try diffTrees(shadow, parentTree, ci.tree, maxSize: rules.maxBytes), commit: c.hex)
        }
        // The work must continue the central branch, or passing it would drop what is there.
        if let tip = centralTip, !(try shadow.isDescendant(head, ofOrEqual: tip)) {
            checker.add(.history, nil, nil,
                        "the worker's HEAD \(head.short) does not descend from \(info.branch) (\(tip.short)); rebase onto it")
        }

        // 3. Only when all that passed: snapshot the work tree as a tree (what would be committed) and
        //    check exactly that, so what is imported is what was checked.
        var snapshot: GitOID?
        var index: OpaquePointer?
        defer { git_index_free(index) }
        if checker.violations.isEmpty {
            try gitCheck(git_repository_index(&index, shadow.ptr), "cannot open the worker's index")
            try gitCheck(git_index_read(index, 1), "cannot read the worker's index")
            if git_index_has_conflicts(index) != 0 {
                checker.add(.unreadable, nil, nil, "the index has unresolved merge conflicts")
            } else {
                try withStrArray(["*"]) { spec in
                    try gitCheck(git_index_add_all(index, spec, GIT_INDEX_ADD_DEFAULT.rawValue, nil, nil), "cannot stage the work tree")
                    try gitCheck(git_index_update_all(index, spec, nil, nil), "cannot stage deletions")
                }
                var treeRaw = git_oid()
                try gitCheck(git_index_write_tree(&treeRaw, index), "cannot write the work tree as a tree")
                let tree = GitOID(treeRaw)
                snapshot = tree
                let net = try diffTrees(shadow, baseTree, tree, maxSize: rules.maxBytes)
                checker.check(net, commit: nil)
                report.changes = net.map(\.change)
            }
        }
        report.lines = report.changes.reduce(0) { $0 + $1.linesAdded + $1.linesRemoved }
        report.bytes = report.changes.reduce(0) { $0 + $1.bytes }
        report.violations = checker.violations
        guard report.passed, let snapshot else { return report }

        // Pass. Commit uncommitted work (in the worker's object store), import, move the central branch.
        let headTree = try shadow.commitInfo(head).tree
        var result = head
        if snapshot != headTree {
            let host = WorkspaceSys.hostname()
            result = try shadow.createCommit(
                tree: snapshot, parents: [head], author: (worker, "\(worker)@sandboxd.invalid"),
                committer: ("sandboxd gate", "sandboxd@\(host)"),
                message: "sandboxd gate: uncommitted work of worker \(worker) (\(runLabel))\n\n"
                    + "Worker: \(worker)\nRun: \(runLabel)\nBase: \(base.hex)\nHost: \(host)\n")
            report.committedUncommitted = true
        }
        if result != centralTip {
            let copied = try GitObjects.copyMissing(from: shadowODB, to: centralODB, roots: [result])
            report.objectsImported = copied.objects
            if try central.repo.compareAndSwap(info.branch, to: result, expected: centralTip,
                                               log: "sandboxd gate: \(worker) (\(runLabel))") == .lost {
                throw SandboxError("\(info.branch) changed in \(central.gitDir) while the gate ran; run the gate again")
            }
        }
        if report.committedUncommitted {
            // The worker's own view follows: its branch (or detached HEAD) at the new commit, index written.
            try gitCheck(git_index_write(index), "cannot write the worker's index")
            var headRef: OpaquePointer?
            if git_reference_lookup(&headRef, shadow.ptr, "HEAD") == 0 {
                defer { git_reference_free(headRef) }
                let name = git_reference_type(headRef) == GIT_REFERENCE_SYMBOLIC
                    ? String(cString: git_reference_symbolic_target(headRef)) : "HEAD"
                if name == "HEAD" {
                    var raw = result.raw
                    try gitCheck(git_repository_set_head_detached(shadow.ptr, &raw), "cannot move the worker's HEAD")
                } else {
                    _ = try shadow.compareAndSwap(name, to: result, expected: head, log: "sandboxd gate: committed uncommitted work")
                }
            }
        }
        info = try Workspace.recordPassed(info, commit: result)
        report.result = result.hex
        return report
    }

    // MARK: diffs

    struct Delta {
        var status: git_delta_t
        var oldPath: String?
        var newPath: String?
        var change: GateChange
    }

    static func statusName(_ s: git_delta_t) -> String {
        switch s {
        case GIT_DELTA_ADDED, GIT_DELTA_UNTRACKED: return "added"
        case GIT_DELTA_DELETED: return "deleted"
        case GIT_DELTA_TYPECHANGE: return "typechange"
        case GIT_DELTA_RENAMED: return "renamed"
        case GIT_DELTA_COPIED: return "copied"
        case GIT_DELTA_UNREADABLE: return "unreadable"
        case GIT_DELTA_CONFLICTED: return "conflicted"
        default: return "modified"
        }
    }

    static func diffOptions(maxSize: UInt64) throws -> git_diff_options {
        var opts = git_diff_options()
        try gitCheck(git_diff_options_init(&opts, UInt32(GIT_DIFF_OPTIONS_VERSION)), "diff options")
        opts.context_lines = 0
        // Content larger than the byte limit is treated as binary (not loaded) and counted by size.
        opts.max_size = git_off_t(clamping: maxSize &+ 1)
        return opts
    }

    /// The work tree (index + files, untracked included, ignored excluded) against a tree.
    static func diffWorkdir(_ repo: GitRepo, against tree: GitOID, maxSize: UInt64) throws -> [Delta] {
        var opts = try diffOptions(maxSize: maxSize)
        opts.flags = GIT_DIFF_INCLUDE_UNTRACKED.rawValue | GIT_DIFF_RECURSE_UNTRACKED_DIRS.rawValue
            | GIT_DIFF_SHOW_UNTRACKED_CONTENT.rawValue | GIT_DIFF_INCLUDE_TYPECHANGE.rawValue
            | GIT_DIFF_INCLUDE_UNREADABLE.rawValue
        var raw = tree.raw
        var t: OpaquePointer?
        try gitCheck(git_tree_lookup(&t, repo.ptr, &raw), "cannot read tree \(tree.short)")
        defer { git_tree_free(t) }
        var diff: OpaquePointer?
        try gitCheck(git_diff_tree_to_workdir_with_index(&diff, repo.ptr, t, &opts), "cannot diff the work tree")
        defer { git_diff_free(diff) }
        return try deltas(diff!, repo: repo)
    }

    static func diffTrees(_ repo: GitRepo, _ a: GitOID?, _ b: GitOID, maxSize: UInt64) throws -> [Delta] {
        var opts = try diffOptions(maxSize: maxSize)
        opts.flags = GIT_DIFF_INCLUDE_TYPECHANGE.rawValue
        var ta: OpaquePointer?
        var tb: OpaquePointer?
        defer {
            git_tree_free(ta)
            git_tree_free(tb)
        }
        if var raw = a?.raw { try gitCheck(git_tree_lookup(&ta, repo.ptr, &raw), "cannot read tree \(a!.short)") }
        var rawB = b.raw
        try gitCheck(git_tree_lookup(&tb, repo.ptr, &rawB), "cannot read tree \(b.short)")
        var diff: OpaquePointer?
        try gitCheck(git_diff_tree_to_tree(&diff, repo.ptr, ta, tb, &opts), "cannot diff trees")
        defer { git_diff_free(diff) }
        return try deltas(diff!, repo: repo)
    }

    static func deltas(_ diff: OpaquePointer, repo: GitRepo) throws -> [Delta] {
        let odb = try repo.odb()
        var out: [Delta] = []
        for i in 0..<git_diff_num_deltas(diff) {
            guard let d = git_diff_get_delta(diff, i)?.pointee else { continue }
            let oldPath = d.old_file.path.map { String(cString: $0) }
            let newPath = d.new_file.path.map { String(cString: $0) }
            var change = GateChange(status: statusName(d.status), path: newPath ?? oldPath ?? "",
                                    linesAdded: 0, linesRemoved: 0, bytes: 0, binary: false)
            if d.status == GIT_DELTA_DELETED { change.path = oldPath ?? change.path }
            var patch: OpaquePointer?
            let rc = git_patch_from_diff(&patch, diff, i)
            if rc == 0, let patch {
                defer { git_patch_free(patch) }
                var ctx = 0, adds = 0, dels = 0
                _ = git_patch_line_stats(&ctx, &adds, &dels, patch)
                change.linesAdded = UInt64(adds)
                change.linesRemoved = UInt64(dels)
                change.bytes = UInt64(git_patch_size(patch, 0, 0, 0))
                let flags = git_patch_get_delta(patch)?.pointee.flags ?? 0
                change.binary = flags & GIT_DIFF_FLAG_BINARY.rawValue != 0
            } else {
                change.binary = true
            }
            if change.binary && d.status != GIT_DELTA_DELETED {
                // Binary content counts whole: its new size.
                var size = Int(d.new_file.size)
                if size == 0 {
                    var raw = d.new_file.id
                    var len = 0
                    var type = GIT_OBJECT_BLOB
                    if git_odb_read_header(&len, &type, odb.ptr, &raw) == 0 { size = len }
                }
                change.bytes = UInt64(size)
            }
            out.append(Delta(status: d.status, oldPath: oldPath, newPath: newPath, change: change))
        }
        return out
    }

    // MARK: rules

    final class Checker {
        let rules: GateRules
        let forbidden: [PathPattern]
        let tests: [PathPattern]
        let claims: [PathPattern]
        let worker: String
        var violations: [GateViolation] = []
        var keys = Set<String>()

        init(rules: GateRules, forbidden: [PathPattern], tests: [PathPattern], claims: [PathPattern], worker: String) {
            self.rules = rules
            self.forbidden = forbidden
            self.tests = tests
            self.claims = claims
            self.worker = worker
        }

        func add(_ rule: GateViolation.Rule, _ path: String?, _ commit: String?, _ message: String) {
            // One violation per rule and path; size rules once per commit (and once for the whole change).
            let sizeRule = rule == .maxLines || rule == .maxBytes
            let key = rule.rawValue + "\0" + (path ?? "") + (sizeRule ? "\0" + (commit ?? "") : "")
            if keys.insert(key).inserted {
                violations.append(GateViolation(rule: rule, path: path, commit: commit, message: message))
            }
        }

        func check(_ deltas: [Delta], commit: String?) {
            var lines: UInt64 = 0
            var bytes: UInt64 = 0
            for d in deltas {
                lines += d.change.linesAdded + d.change.linesRemoved
                bytes += d.change.bytes
                if d.status == GIT_DELTA_UNREADABLE {
                    add(.unreadable, d.change.path, commit, "the file cannot be read")
                    continue
                }
                if d.status == GIT_DELTA_CONFLICTED {
                    add(.unreadable, d.change.path, commit, "unresolved merge conflict")
                    continue
                }
                var paths: [String] = []
                for p in [d.oldPath, d.newPath].compactMap({ $0 }) where !paths.contains(p) { paths.append(p) }
                for p in paths {
                    if p.split(separator: "/").contains(where: { $0.lowercased() == ".git" }) {
                        add(.gitInternalPath, p, commit, "paths inside a .git directory are never accepted")
                    }
                    if let f = forbidden.first(where: { $0.matches(p) }) {
                        add(.forbiddenPath, p, commit, "matches forbidden pattern '\(f.text)'")
                    }
                    if !claims.isEmpty && !PathPattern.any(claims, matches: p) {
                        add(.unclaimedPath, p, commit,
                            "not covered by \(worker)'s claims (\(claims.map(\.text).joined(separator: ", ")))")
                    }
                }
                // Existing tests: the old side of anything but an addition.
                let added = d.status == GIT_DELTA_ADDED || d.status == GIT_DELTA_UNTRACKED
                if !added, let old = d.oldPath, let t = tests.first(where: { $0.matches(old) }) {
                    if d.status == GIT_DELTA_DELETED {
                        add(.testDeleted, old, commit, "existing test deleted (matches '\(t.text)')")
                    } else {
                        add(.testModified, old, commit, "existing test modified (matches '\(t.text)')")
                    }
                }
            }
            let whom = commit.map { "commit \($0.prefix(12)) changes" } ?? "the change is"
            if lines > rules.maxLines {
                add(.maxLines, nil, commit, "\(whom) \(lines) lines (limit \(rules.maxLines))")
            }
            if bytes > rules.maxBytes {
                add(.maxBytes, nil, commit,
                    "\(whom) \(WorkspaceText.bytes(bytes)) (\(bytes) bytes; limit \(rules.maxBytes))")
            }
        }
    }
}
