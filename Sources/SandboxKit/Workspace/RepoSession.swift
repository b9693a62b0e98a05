import Glibc

/// `sandboxd exec --repo R --worker W [--base REF] [--claim P]...`: the worker's
/// worktree is provisioned, its claims acquired, the sandbox runs in the
/// worktree, and afterwards the gate decides what comes back and the claims
/// are released. The git work is done by `sandboxd-ext` (libgit2 stays out of
/// the launcher's start-up), through its public commands.
public struct RepoSession {
    public let repo: String
    public let worker: String
    public let claims: [String]
    /// The worktree: the sandbox's workdir.
    public let workdir: String
    /// Binds the sandbox needs besides the workdir: `SRC:DEST` read-only and read-write.
    public let readOnly: [String]
    public let readWrite: [String]
    /// The commit the worktree was created from.
    public let base: String?
    let ext: String

    /// Provisions (or reuses) the worktree and acquires the claims. A claim
    /// held by another worker fails with exit 75 and sandboxd-ext's message naming the holder.
    public static func begin(repo: String, worker: String, base: String?, claims: [String],
                             ext: String = companionBinary("sandboxd-ext")) throws(SandboxError) -> RepoSession {
        var args = ["worktree", "add", worker, "--repo", repo, "--json"]
        if let base { args += ["--base", base] }
        let add = try Subprocess.run(ext, args)
        guard add.status == 0 else { throw SandboxError("the worktree of worker \(worker) in \(repo) could not be provisioned (see the message above)", exitCode: add.status == 75 ? 75 : ExitCode.sandboxFailed) }
        let info: JSON
        do { info = try JSONParser.parse(add.stdout) } catch {
            throw SandboxError("unreadable answer from sandboxd-ext worktree add: \(error)")
        }
        guard case .string(let path)? = info["path"], case .array(let mounts)? = info["mounts"] else {
            throw SandboxError("sandboxd-ext worktree add did not say where the worktree is")
        }
        var ro: [String] = [], rw: [String] = []
        for m in mounts {
            guard case .string(let src)? = m["source"], case .string(let dst)? = m["target"], case .bool(let readOnly)? = m["readOnly"] else { continue }
            if src == path { continue } // the workdir itself
            if readOnly { ro.append("\(src):\(dst)") } else { rw.append("\(src):\(dst)") }
        }
        var baseCommit: String? = nil
        if case .string(let b)? = info["base"] { baseCommit = b }
        let session = RepoSession(repo: repo, worker: worker, claims: claims, workdir: path, readOnly: ro, readWrite: rw,
                                  base: baseCommit, ext: ext)
        if !claims.isEmpty {
            let acquire = try Subprocess.run(ext, ["lock", "acquire", "--repo", repo, "--worker", worker] + claims)
            guard acquire.status == 0 else {
                throw SandboxError("claims of \(worker) not acquired; the command did not run", exitCode: acquire.status)
            }
        }
        return session
    }

    /// Whether the worker's worktree holds commits or changes that have not
    /// passed the gate (as `sandboxd worktree list` reports it). An unreadable
    /// answer counts as "yes": never lose work on a guess.
    public static func hasUnpassedWork(repo: String, worker: String, ext: String = companionBinary("sandboxd-ext")) -> Bool {
        guard let list = try? Subprocess.run(ext, ["worktree", "list", "--repo", repo, "--json"]), list.status == 0,
              case .array(let items)? = try? JSONParser.parse(list.stdout) else { return true }
        for item in items {
            guard case .string(let w)? = item["worker"], w == worker else { continue }
            guard let status = item["status"] else { return true }
            if case .string? = status["problem"] { return true }
            if case .int(let n)? = status["unpassedCommits"], n > 0 { return true }
            if case .array(let changes)? = status["uncommitted"], !changes.isEmpty { return true }
            return false
        }
        return false // no worktree left: nothing to lose
    }

    public struct GateOutcome: Sendable {
        public var passed: Bool
        /// The gate's JSON report.
        public var report: JSON?
    }

    /// Runs the gate on the worker's changes, then releases the claims (whether it passed or not).
    public func finish(runID: String) -> GateOutcome {
        var args = ["gate", "--repo", repo, "--worker", worker, "--run", runID, "--json"]
        for c in claims { args += ["--claim", c] }
        let gate = try? Subprocess.run(ext, args)
        if !claims.isEmpty {
            _ = try? Subprocess.run(ext, ["lock", "release", "--repo", repo, "--worker", worker] + claims)
        }
        let report = gate.flatMap { try? JSONParser.parse($0.stdout) }
        return GateOutcome(passed: gate?.status == 0, report: report)
    }
}
