/// `manifest.json` of a named sandbox: what it is (profile, workdir,
/// repository), where it came from, and every run. Versioned: a reader
/// refuses a newer format instead of guessing.
public struct SandboxManifest: Sendable, Equatable {
    public static let format = "sandboxd.sandbox"
    public static let currentVersion: Int64 = 1
    /// The manifest keeps the most recent runs; the audit log keeps all of
    /// them. Every exec reads and rewrites the manifest, so its size is a
    /// cost per exec: 32 runs made it ~18 KB, ~0.3 ms to parse and render.
    public static let keptRuns = 10

    public enum Status: String, Sendable {
        /// Created, never run.
        case created
        /// A run is going on (only true while the lock is held).
        case running
        /// The last run ended (whatever its exit code).
        case idle
        /// The last run never finished: sandboxd was killed, or the machine stopped.
        case interrupted
    }

    public struct Run: Sendable, Equatable {
        public enum State: String, Sendable {
            case running, exited, failed, interrupted
        }
        public var id: Int64
        public var state: State
        public var pid: Int32
        public var argv: [String]
        public var workflowID: String
        public var start: String
        public var end: String?
        public var exitCode: Int32?
        public var signal: Int32?
        public var timedOut = false
        public var wallSeconds: Double?
        public var cpuUserSeconds: Double?
        public var cpuSystemSeconds: Double?
        public var peakMemoryBytes: UInt64?
        public var oomKilled = false
        /// Why the run failed to start, or how it was found interrupted.
        public var message: String?

        public init(id: Int64, pid: Int32, argv: [String], workflowID: String, start: String) {
            self.id = id
            self.state = .running
            self.pid = pid
            self.argv = argv
            self.workflowID = workflowID
            self.start = start
        }
    }

    /// A repository worktree as the sandbox's workdir (the workspace commands).
    public struct Repository: Sendable, Equatable {
        public var path: String
        public var worker: String
        public var base: String?
        public init(path: String, worker: String, base: String?) {
            self.path = path
            self.worker = worker
            self.base = base
        }
    }

    public struct Plan: Sendable, Equatable {
        public var sha256: String
        public var bytes: Int64
        public var source: String
    }

    public var version: Int64 = SandboxManifest.currentVersion
    public var name: String
    public var created: String
    public var status: Status = .created
    /// The profile as resolved at create time: name, where it came from, and its full TOML.
    public var profileName: String
    public var profileSource: String
    public var profileTOML: String
    /// nil: the sandbox's own `workdir` directory. Otherwise a host directory given at create.
    public var externalWorkdir: String?
    public var repository: Repository?
    public var plan: Plan?
    public var runs: [Run] = []
    /// Every run ever started (the manifest keeps only the last `keptRuns`).
    public var runCount: Int64 = 0
    /// Where an imported sandbox came from.
    public var importedFrom: JSON?
    /// The last audit line this manifest knows of: `audit verify` requires it
    /// to still be in the log (lines cut off the end are detected).
    public var auditSeq: Int64 = 0
    public var auditHash: String = AuditLog.genesis
    /// The log's size in bytes at that line: a log of any other size has
    /// lines the manifest has not taken in yet (see `apply`). nil in
    /// manifests written before it was recorded.
    public var auditSize: Int64?

    public init(name: String, created: String, profileName: String, profileSource: String, profileTOML: String) {
        self.name = name
        self.created = created
        self.profileName = profileName
        self.profileSource = profileSource
        self.profileTOML = profileTOML
    }

    public var lastRun: Run? { runs.last }

    // MARK: JSON

    public var json: JSON {
        var fields: [(String, JSON)] = [
            ("format", .string(Self.format)),
            ("version", .int(version)),
            ("name", .string(name)),
            ("created", .string(created)),
            ("status", .string(status.rawValue)),
            ("profile", .object([
                ("name", .string(profileName)), ("source", .string(profileSource)),
                ("sha256", .string(SHA256.hex(of: profileTOML))), ("toml", .string(profileTOML)),
            ])),
            ("workdir", externalWorkdir.map { .object([("external", .string($0))]) } ?? .object([("managed", .string("workdir"))])),
            ("repository", repository.map { r in
                .object([("path", .string(r.path)), ("worker", .string(r.worker)), ("base", r.base.map(JSON.string) ?? .null)])
            } ?? .null),
            ("plan", plan.map { p in
                .object([("sha256", .string(p.sha256)), ("bytes", .int(p.bytes)), ("source", .string(p.source))])
            } ?? .null),
            ("audit", .object([("seq", .int(auditSeq)), ("hash", .string(auditHash))] + (auditSize.map { [("size", JSON.int($0))] } ?? []))),
            ("run_count", .int(runCount)),
            ("runs", .array(runs.map(\.json))),
        ]
        if let importedFrom { fields.append(("imported", importedFrom)) }
        return .object(fields)
    }

    public func rendered() -> [UInt8] { json.bytes(pretty: true) + [0x0A] }

    public static func parse(_ bytes: [UInt8], file: String) throws(SandboxError) -> SandboxManifest {
        let root: JSON
        do { root = try JSONParser.parse(bytes) } catch { throw SandboxError("\(file): not valid JSON: \(error)") }
        func fail(_ what: String) -> SandboxError { SandboxError("\(file): \(what)") }
        guard root["format"]?.stringValue == Self.format else { throw fail("not a sandboxd manifest (format is not \"\(Self.format)\")") }
        guard let version = root["version"]?.intValue else { throw fail("no version") }
        guard version <= Self.currentVersion else {
            throw fail("manifest version \(version) is newer than this sandboxd understands (\(Self.currentVersion)); upgrade sandboxd")
        }
        guard let name = root["name"]?.stringValue, let created = root["created"]?.stringValue,
              let profile = root["profile"], let pName = profile["name"]?.stringValue,
              let pTOML = profile["toml"]?.stringValue else { throw fail("missing name, created or profile") }
        var m = SandboxManifest(name: name, created: created, profileName: pName,
                                profileSource: profile["source"]?.stringValue ?? "", profileTOML: pTOML)
        m.version = version
        m.status = root["status"]?.stringValue.flatMap(Status.init(rawValue:)) ?? .idle
        m.externalWorkdir = root["workdir"]?["external"]?.stringValue
        if let r = root["repository"], let path = r["path"]?.stringValue, let worker = r["worker"]?.stringValue {
            m.repository = Repository(path: path, worker: worker, base: r["base"]?.stringValue)
        }
        if let p = root["plan"], let sha = p["sha256"]?.stringValue {
            m.plan = Plan(sha256: sha, bytes: p["bytes"]?.intValue ?? 0, source: p["source"]?.stringValue ?? "")
        }
        m.runs = (root["runs"]?.arrayValue ?? []).compactMap(Run.init(json:))
        m.runCount = root["run_count"]?.intValue ?? Int64(m.runs.count)
        if let imported = root["imported"], !imported.isNull { m.importedFrom = imported }
        m.auditSeq = root["audit"]?["seq"]?.intValue ?? 0
        m.auditHash = root["audit"]?["hash"]?.stringValue ?? AuditLog.genesis
        m.auditSize = root["audit"]?["size"]?.intValue
        return m
    }
}

// MARK: Replay

/// The audit log is written first and the manifest follows it: every change
/// to the runs is an audit line, and `apply` is the one place that turns a
/// line into manifest state. A run's start is only an audit line (the
/// manifest is written when the run ends), so a manifest can lag its log;
/// a session replays the lines after the manifest's head (`SandboxSession.open`).
extension SandboxManifest {
    /// Takes in the lines of `log` after this manifest's head, in memory.
    public mutating func catchUp(with log: AuditLog) throws(SandboxError) {
        if let size = auditSize, let st = statPath(log.path), Int64(st.st_size) == size { return }
        for line in try log.lines(after: auditSeq) { apply(line) }
    }

    public mutating func apply(_ line: AuditLog.Line) {
        auditSeq = line.seq
        auditHash = line.hash
        auditSize = line.end
        let j = line.json
        guard let event = j["event"]?.stringValue, let id = j["run"]?.intValue else { return }
        let time = j["time"]?.stringValue ?? ""
        switch event {
        case "exec.start":
            guard !runs.contains(where: { $0.id == id }) else { return }
            runs.append(Run(id: id, pid: Int32(truncatingIfNeeded: j["pid"]?.intValue ?? 0),
                            argv: j["argv"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                            workflowID: j["workflow"]?.stringValue ?? "", start: time))
            if runs.count > Self.keptRuns { runs.removeFirst(runs.count - Self.keptRuns) }
            runCount = max(runCount, id)
            status = .running
        case "exec.end", "exec.failed":
            guard let i = runs.lastIndex(where: { $0.id == id }) else { return }
            runs[i].state = event == "exec.failed" ? .failed : .exited
            runs[i].end = time
            runs[i].exitCode = j["exit_code"]?.intValue.map { Int32(truncatingIfNeeded: $0) }
            runs[i].signal = j["signal"]?.intValue.map { Int32(truncatingIfNeeded: $0) }
            runs[i].timedOut = j["timed_out"]?.boolValue ?? false
            runs[i].wallSeconds = j["wall_seconds"]?.doubleValue
            runs[i].cpuUserSeconds = j["cpu_user_seconds"]?.doubleValue
            runs[i].cpuSystemSeconds = j["cpu_system_seconds"]?.doubleValue
            runs[i].peakMemoryBytes = j["peak_memory_bytes"]?.intValue.map { UInt64(clamping: $0) }
            runs[i].oomKilled = j["oom_killed"]?.boolValue ?? false
            runs[i].message = j["error"]?.stringValue
            if runs.allSatisfy({ $0.state != .running }) { status = .idle }
        case "run.interrupted":
            guard let i = runs.lastIndex(where: { $0.id == id }), runs[i].state == .running else { return }
            runs[i].state = .interrupted
            runs[i].message = j["message"]?.stringValue
            if runs.allSatisfy({ $0.state != .running }) { status = .interrupted }
        default:
            return
        }
    }
}

extension SandboxManifest.Run {
    public var json: JSON {
        var f: [(String, JSON)] = [
            ("id", .int(id)), ("state", .string(state.rawValue)), ("pid", .int(Int64(pid))),
            ("argv", .strings(argv)), ("workflow_id", .string(workflowID)),
            ("start", .string(start)), ("end", end.map(JSON.string) ?? .null),
            ("exit_code", exitCode.map { .int(Int64($0)) } ?? .null),
        ]
        if let signal { f.append(("signal", .int(Int64(signal)))) }
        if wallSeconds != nil || peakMemoryBytes != nil {
            f.append(("resources", .object([
                ("wall_seconds", wallSeconds.map(JSON.double) ?? .null),
                ("cpu_user_seconds", cpuUserSeconds.map(JSON.double) ?? .null),
                ("cpu_system_seconds", cpuSystemSeconds.map(JSON.double) ?? .null),
                ("peak_memory_bytes", peakMemoryBytes.map(JSON.uint) ?? .null),
                ("oom_killed", .bool(oomKilled)),
                ("timed_out", .bool(timedOut)),
            ])))
        }
        if let message { f.append(("message", .string(message))) }
        return .object(f)
    }

    init?(json: JSON) {
        guard let id = json["id"]?.intValue, let state = json["state"]?.stringValue.flatMap(State.init(rawValue:)),
              let start = json["start"]?.stringValue else { return nil }
        self.init(id: id, pid: Int32(truncatingIfNeeded: json["pid"]?.intValue ?? 0),
                  argv: json["argv"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                  workflowID: json["workflow_id"]?.stringValue ?? "", start: start)
        self.state = state
        end = json["end"]?.stringValue
        exitCode = json["exit_code"]?.intValue.map { Int32(truncatingIfNeeded: $0) }
        signal = json["signal"]?.intValue.map { Int32(truncatingIfNeeded: $0) }
        if let r = json["resources"] {
            wallSeconds = r["wall_seconds"]?.doubleValue
            cpuUserSeconds = r["cpu_user_seconds"]?.doubleValue
            cpuSystemSeconds = r["cpu_system_seconds"]?.doubleValue
            peakMemoryBytes = r["peak_memory_bytes"]?.intValue.map { UInt64(clamping: $0) }
            oomKilled = r["oom_killed"]?.boolValue ?? false
            timedOut = r["timed_out"]?.boolValue ?? false
        }
        message = json["message"]?.stringValue
    }
}
