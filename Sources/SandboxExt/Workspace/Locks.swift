import CGit2
import Glibc

/// One path claim held by a worker, as recorded on `refs/sandboxd/locks`.
public struct LockClaim: Sendable, Equatable {
    public var worker: String
    /// The normalized pattern (see `PathPattern`).
    public var pattern: String
    /// Where the holder runs, and its process (the one whose death frees the claim after its lease).
    public var host: String
    public var pid: Int32
    /// The holder process's start time (clock ticks since boot), to detect a reused pid.
    public var pidStart: UInt64?
    /// Unix times. `expires` 0: the lease never expires (only `lock release` frees the claim).
    public var acquired: Int64
    public var expires: Int64

    public init(worker: String, pattern: String, host: String, pid: Int32, pidStart: UInt64? = nil,
                acquired: Int64, expires: Int64) {
        self.worker = worker
        self.pattern = pattern
        self.host = host
        self.pid = pid
        self.pidStart = pidStart
        self.acquired = acquired
        self.expires = expires
    }

    /// The lock file's name under `locks/` (and its metadata's under `meta/`):
    /// the pattern percent-encoded, `@`, the worker.
    public var fileName: String { LockStore.fileName(pattern: pattern, worker: worker) }

    public func isExpired(now: Int64) -> Bool { expires != 0 && expires <= now }

    /// Whether `lock gc` may release it: the lease has expired and, on this host, the holder
    /// process is gone; on another host the lease alone decides.
    public func isReclaimable(now: Int64, host currentHost: String) -> Bool {
        guard isExpired(now: now) else { return false }
        if host != currentHost { return true }
        guard WorkspaceSys.processAlive(pid) else { return true }
        if let want = pidStart, let have = WorkspaceSys.processStartTime(pid), want != have { return true }
        return false
    }

    var metadata: String {
        var kv = KeyValueText()
        kv.add("worker", worker)
        kv.add("pattern", pattern)
        kv.add("host", host)
        kv.add("pid", String(pid))
        if let s = pidStart { kv.add("pid-start", String(s)) }
        kv.add("acquired", String(acquired))
        kv.add("expires", String(expires))
        return kv.text
    }

    init?(metadata text: String) {
        let kv = KeyValueText(parsing: text)
        guard let w = kv["worker"], let p = kv["pattern"] else { return nil }
        self.init(worker: w, pattern: p, host: kv["host"] ?? "", pid: Int32(kv["pid"] ?? "") ?? 0,
                  pidStart: kv["pid-start"].flatMap { UInt64($0) },
                  acquired: Int64(kv["acquired"] ?? "") ?? 0, expires: Int64(kv["expires"] ?? "") ?? 0)
    }
}

/// A conflicting acquire: who holds what.
public struct LockConflict: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Overlap: Sendable, Equatable {
        /// The pattern asked for.
        public var requested: String
        /// The claim it overlaps.
        public var held: LockClaim
    }
    public var worker: String
    public var overlaps: [Overlap]
    /// Every pattern held by each conflicting holder, by worker.
    public var holderPatterns: [String: [String]]
    public var now: Int64

    public var holders: [String] {
        var seen: [String] = []
        for o in overlaps where !seen.contains(o.held.worker) { seen.append(o.held.worker) }
        return seen
    }

    public var description: String {
        var lines = ["lock conflict: \(worker) cannot claim \(Set(overlaps.map(\.requested)).sorted().joined(separator: ", "))"]
        for o in overlaps {
            let h = o.held
            let all = holderPatterns[h.worker] ?? [h.pattern]
            var lease = "lease expires \(WorkspaceText.relative(h.expires, now: now))"
            if h.isExpired(now: now) { lease = "lease expired \(WorkspaceText.relative(h.expires, now: now)); `sandboxd lock gc` frees it once pid \(h.pid) is gone" }
            lines.append("  '\(o.requested)' overlaps '\(h.pattern)' held by \(h.worker) "
                         + "(\(h.worker) holds: \(all.joined(separator: ", ")); host \(h.host), pid \(h.pid), \(lease))")
        }
        return lines.joined(separator: "\n")
    }

    public var sandboxError: SandboxError { SandboxError(description, exitCode: ExitCode.lockConflict) }
}

/// Path locks of a central repository, recorded as commits on `refs/sandboxd/locks`.
///
/// The ref's tree holds `locks/<name>` (empty files, one per claim) and `meta/<name>` (the
/// claim's holder metadata); one commit per acquire, release or gc, with the holder metadata in
/// the message too. Every change is a compare-and-swap of the ref against the commit it was built
/// on, retried from a fresh read when another writer won, so claims are never lost or duplicated
/// and the history is linear. With a remote, the remote's ref is the one compared and swapped.
public final class LockStore {
    public static let ref = "refs/sandboxd/locks"
    /// The default lease, seconds.
    public static let defaultLease: Int64 = 3600

    let repo: GitRepo
    let remote: LockRemote?
    /// Where the central repository is, for messages.
    public let gitDir: String

    /// Opens the lock store of the repository at or containing `repo`. With `remote` (a remote's
    /// name), every read fetches the remote's lock ref first and every change is pushed to it
    /// (fast-forward only).
    public init(repo path: String, remote: String? = nil) throws {
        let central = try Workspace.Central.open(path)
        repo = central.repo
        gitDir = central.gitDir
        self.remote = try remote.map { try makeLockRemote(repo: central.repo, name: $0) }
    }

    // MARK: names

    public static func fileName(pattern: String, worker: String) -> String {
        var out = ""
        for b in pattern.utf8 {
            let safe = (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 45 || b == 46 || b == 95
            if safe {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                let hex = String(b, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" : "") + hex
            }
        }
        return out + "@" + worker
    }

    // MARK: reading

    /// The current claims, sorted by worker then pattern.
    public func list() throws -> [LockClaim] {
        try claims(at: try currentTip())
    }

    /// The commit the ref points at (after fetching from the remote, if any).
    func currentTip() throws -> GitOID? {
        if let remote {
            let tip = try remote.fetch()
            if let tip { try mirrorLocally(tip) }
            return tip
        }
        return try repo.refTarget(Self.ref)
    }

    func claims(at tip: GitOID?) throws -> [LockClaim] {
        guard let tip else { return [] }
        let root = try repo.commitInfo(tip).tree
        let entries = try repo.treeEntries(root)
        guard let locksTree = entries.first(where: { $0.name == "locks" && $0.isTree }) else { return [] }
        var meta: [String: GitOID] = [:]
        if let metaTree = entries.first(where: { $0.name == "meta" && $0.isTree }) {
            for e in try repo.treeEntries(metaTree.oid) { meta[e.name] = e.oid }
        }
        var out: [LockClaim] = []
        for e in try repo.treeEntries(locksTree.oid) {
            if let m = meta[e.name], let c = LockClaim(metadata: String(decoding: try repo.readBlob(m), as: UTF8.self)),
               c.fileName == e.name {
                out.append(c)
            } else if let at = e.name.lastIndex(of: "@") {
                // A lock file without readable metadata still holds its pattern.
                let pattern = Self.percentDecode(String(e.name[..<at]))
                out.append(LockClaim(worker: String(e.name[e.name.index(after: at)...]), pattern: pattern,
                                     host: "", pid: 0, acquired: 0, expires: 0))
            }
        }
        return out.sorted { ($0.worker, $0.pattern) < ($1.worker, $1.pattern) }
    }

    static func percentDecode(_ s: String) -> String {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == 37, it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The commits of the lock ref, newest first (first parents).
    func history() throws -> [GitOID] {
        var out: [GitOID] = []
        var cur = try repo.refTarget(Self.ref)
        while let c = cur {
            out.append(c)
            cur = try repo.commitInfo(c).parents.first
        }
        return out
    }

    // MARK: changing

    struct Change {
        var claims: [LockClaim]
        var subject: String
        var body: [String]
        var author: String
    }

    /// Applies `transform` to the current claims and records the result as one commit, by
    /// compare-and-swap of the ref; on a lost race it re-reads and calls `transform` again.
    /// `transform` returns nil for "nothing to change" and throws to abort.
    @discardableResult
    func commitChange(_ transform: ([LockClaim]) throws -> Change?) throws -> (change: Change, commit: GitOID)? {
        let deadline = WorkspaceSys.monotonicSeconds() + 120
        var attempt = 0
        while true {
            let tip = try currentTip()
            let current = try claims(at: tip)
            guard let change = try transform(current) else { return nil }
            let commit = try writeCommit(change, parent: tip)
            let won: Bool
            if let remote {
                won = try remote.push(commit, expected: tip)
                if won { try mirrorLocally(commit) }
            } else {
                won = try repo.compareAndSwap(Self.ref, to: commit, expected: tip, log: change.subject) == .updated
            }
            if won { return (change, commit) }
            attempt += 1
            if WorkspaceSys.monotonicSeconds() > deadline {
                throw SandboxError(
                    "could not update \(Self.ref) in \(gitDir) after \(attempt) attempts: other writers keep winning, "
                        + "or a stale \(gitDir)/\(Self.ref).lock file is left behind (remove it if no sandboxd is running)")
            }
            // Jittered backoff: 1 ms growing to 50 ms locally, 50 ms to 1 s against a remote.
            let cap = remote == nil ? 0.05 : 1.0
            let base = remote == nil ? 0.001 : 0.05
            WorkspaceSys.sleep(seconds: min(cap, base * Double(1 << min(attempt, 10))) * (0.5 + WorkspaceSys.jitter()))
        }
    }

    /// Sets the local ref to `tip` (the remote's state) unless the local ref is already at or past it.
    func mirrorLocally(_ tip: GitOID) throws {
        for _ in 0..<20 {
            let cur = try repo.refTarget(Self.ref)
            if cur == tip { return }
            if let cur, try repo.hasObject(cur), try repo.isDescendant(cur, ofOrEqual: tip) { return }
            if try repo.compareAndSwap(Self.ref, to: tip, expected: cur, log: "sandboxd: lock ref from remote") == .updated {
                return
            }
        }
    }

    func writeCommit(_ change: Change, parent: GitOID?) throws -> GitOID {
        var lockEntries: [GitRepo.TreeEntry] = []
        var metaEntries: [GitRepo.TreeEntry] = []
        let empty = try repo.writeBlob([])
        let blob = GIT_FILEMODE_BLOB.rawValue
        for c in change.claims {
            lockEntries.append(.init(name: c.fileName, oid: empty, mode: blob))
            metaEntries.append(.init(name: c.fileName, oid: try repo.writeBlob(Array(c.metadata.utf8)), mode: blob))
        }
        var root: [GitRepo.TreeEntry] = [
            .init(name: "README", oid: try repo.writeBlob(Array(Self.readme.utf8)), mode: blob),
        ]
        if !lockEntries.isEmpty {
            root.append(.init(name: "locks", oid: try repo.writeTree(lockEntries), mode: GIT_FILEMODE_TREE.rawValue))
            root.append(.init(name: "meta", oid: try repo.writeTree(metaEntries), mode: GIT_FILEMODE_TREE.rawValue))
        }
        let tree = try repo.writeTree(root)
        let message = change.subject + "\n\n" + change.body.joined(separator: "\n") + "\n"
        let host = WorkspaceSys.hostname()
        return try repo.createCommit(
            tree: tree, parents: parent.map { [$0] } ?? [],
            author: (change.author, "\(change.author)@sandboxd.invalid"),
            committer: ("sandboxd", "sandboxd@\(host)"), message: message)
    }

    static let readme = """
        Path locks of sandboxd workers (see docs/WORKSPACES.md).
        locks/<pattern, percent-encoded>@<worker>: one empty file per claim.
        meta/<same name>: the holder (worker, pattern, host, pid, acquired, expires).
        Change it only with `sandboxd lock`: every change is a compare-and-swap of this ref.

        """

    // MARK: operations

    /// Claims `patterns` for `worker`, all or nothing. A pattern the worker already holds has its
    /// lease renewed. On a conflict, retries until `wait` seconds have passed (0: fail at once) and
    /// then throws `LockConflict` (exit code 75 through `sandboxError`).
    @discardableResult
    public func acquire(worker: String, patterns: [String], lease: Int64 = LockStore.defaultLease,
                        wait: Double = 0, pid: Int32 = getpid(), host: String? = nil) throws -> [LockClaim] {
        let host = host ?? WorkspaceSys.hostname()
        try Workspace.validateWorkerName(worker)
        guard !patterns.isEmpty else { throw SandboxError("lock acquire: give at least one path pattern") }
        var wanted: [PathPattern] = []
        for p in patterns {
            let pat = try PathPattern(p)
            if pat.text.utf8.count > 512 { throw SandboxError("path pattern too long (512 bytes at most): \(p)") }
            if !wanted.contains(pat) { wanted.append(pat) }
        }
        let pidStart = WorkspaceSys.processStartTime(pid)
        let waitDeadline = WorkspaceSys.monotonicSeconds() + max(0, wait)
        var backoff = 0.05
        while true {
            do {
                var granted: [LockClaim] = []
                try commitChange { current in
                    let now = WorkspaceSys.now()
                    var overlaps: [LockConflict.Overlap] = []
                    for w in wanted {
                        for c in current where c.worker != worker {
                            let held = (try? PathPattern(c.pattern)) ?? PathPattern.everything
                            if w.overlaps(held) { overlaps.append(.init(requested: w.text, held: c)) }
                        }
                    }
                    if !overlaps.isEmpty {
                        var all: [String: [String]] = [:]
                        for c in current { all[c.worker, default: []].append(c.pattern) }
                        throw LockConflict(worker: worker, overlaps: overlaps, holderPatterns: all, now: now)
                    }
                    granted = wanted.map {
                        LockClaim(worker: worker, pattern: $0.text, host: host, pid: pid, pidStart: pidStart,
                                  acquired: now, expires: lease > 0 ? now + lease : 0)
                    }
                    let names = Set(granted.map(\.fileName))
                    let kept = current.filter { !names.contains($0.fileName) }
                    var body = ["worker: \(worker)", "host: \(host)", "pid: \(pid)",
                                "expires: \(lease > 0 ? String(now + lease) : "never")"]
                    body += granted.map { "pattern: \($0.pattern)" }
                    return Change(claims: kept + granted,
                                  subject: "acquire \(worker): " + granted.map(\.pattern).joined(separator: ", "),
                                  body: body, author: worker)
                }
                return granted
            } catch let conflict as LockConflict {
                let remaining = waitDeadline - WorkspaceSys.monotonicSeconds()
                if remaining <= 0 { throw conflict }
                WorkspaceSys.sleep(seconds: min(remaining, backoff * (0.75 + 0.5 * WorkspaceSys.jitter())))
                backoff = min(backoff * 2, 2)
            }
        }
    }

    /// Releases `worker`'s claims on `patterns` (all of them when empty). Returns what was released.
    @discardableResult
    public func release(worker: String, patterns: [String] = []) throws -> [LockClaim] {
        try Workspace.validateWorkerName(worker)
        let wanted = Set(try patterns.map { try PathPattern.normalize($0) })
        var released: [LockClaim] = []
        try commitChange { current in
            released = current.filter { $0.worker == worker && (wanted.isEmpty || wanted.contains($0.pattern)) }
            if released.isEmpty { return nil }
            let gone = Set(released.map(\.fileName))
            return Change(claims: current.filter { !gone.contains($0.fileName) },
                          subject: "release \(worker): " + released.map(\.pattern).joined(separator: ", "),
                          body: ["worker: \(worker)"] + released.map { "pattern: \($0.pattern)" }, author: worker)
        }
        return released
    }

    /// Releases every claim whose lease has expired and whose holder is gone (same host: its pid is
    /// not alive; another host: the lease alone). Returns what was released.
    @discardableResult
    public func gc(now: Int64? = nil, host: String? = nil) throws -> [LockClaim] {
        let host = host ?? WorkspaceSys.hostname()
        var reclaimed: [LockClaim] = []
        try commitChange { current in
            let t = now ?? WorkspaceSys.now()
            reclaimed = current.filter { $0.isReclaimable(now: t, host: host) }
            if reclaimed.isEmpty { return nil }
            let gone = Set(reclaimed.map(\.fileName))
            return Change(
                claims: current.filter { !gone.contains($0.fileName) },
                subject: "gc: release " + reclaimed.map { "\($0.worker):\($0.pattern)" }.joined(separator: ", "),
                body: reclaimed.map { "released: \($0.worker) \($0.pattern) (host \($0.host), pid \($0.pid), expired \($0.expires))" },
                author: "sandboxd")
        }
        return reclaimed
    }

    /// The patterns `worker` holds.
    public func patterns(of worker: String) throws -> [String] {
        try list().filter { $0.worker == worker }.map(\.pattern)
    }
}

extension PathPattern {
    /// `**`: every path.
    static let everything = try! PathPattern("**")
}
