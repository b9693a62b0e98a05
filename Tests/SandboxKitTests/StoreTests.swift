import Foundation
import Glibc
import Testing
@testable import SandboxKit

/// One file system entry as the tree comparisons see it.
struct TreeEntry: Equatable, CustomStringConvertible {
    var path: String
    var type: mode_t
    var mode: mode_t
    var uid: uid_t
    var gid: gid_t
    var size: Int
    var mtime: Int
    var mtimeNsec: Int
    var content: String
    var xattrs: [String]
    var description: String {
        "\(path) type \(String(type, radix: 8)) mode \(String(mode, radix: 8)) \(uid):\(gid) size \(size) mtime \(mtime).\(mtimeNsec) \(content) \(xattrs)"
    }
}

/// Every entry below `root` (relative paths, sorted), with contents, link targets and carried xattrs.
func treeSnapshot(_ root: String, mtimes: Bool = true) -> [TreeEntry] {
    var out: [TreeEntry] = []
    func walk(_ rel: String) {
        let full = rel.isEmpty ? root : root + "/" + rel
        var st = stat()
        guard lstat(full, &st) == 0 else { return }
        let type = st.st_mode & S_IFMT
        var content = ""
        if type == S_IFREG {
            content = SHA256.hex(of: (try? FileSys.read(full, limit: 1 << 30)) ?? [])
        } else if type == S_IFLNK {
            content = "-> " + (FileSys.readLink(full) ?? "?")
        } else if type == S_IFCHR || type == S_IFBLK {
            content = "rdev \(st.st_rdev)"
        }
        let xattrs = FileSys.xattrNames(full).filter(FileSys.isCarriedXattr).sorted().map { n in
            n + "=" + SHA256.hex(FileSys.xattr(full, n) ?? [])
        }
        out.append(TreeEntry(path: rel.isEmpty ? "." : rel, type: type, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid,
                             size: type == S_IFDIR ? 0 : Int(st.st_size), mtime: mtimes ? st.st_mtim.tv_sec : 0,
                             mtimeNsec: mtimes ? st.st_mtim.tv_nsec : 0, content: content, xattrs: xattrs))
        if type == S_IFDIR {
            for name in FileSys.list(full).sorted() { walk(rel.isEmpty ? name : rel + "/" + name) }
        }
    }
    walk("")
    return out
}

/// Lines that differ between two snapshots (empty when equal).
func treeDiff(_ a: [TreeEntry], _ b: [TreeEntry]) -> [String] {
    var diffs: [String] = []
    let ma = Dictionary(uniqueKeysWithValues: a.map { ($0.path, $0) })
    let mb = Dictionary(uniqueKeysWithValues: b.map { ($0.path, $0) })
    for (p, e) in ma.sorted(by: { $0.key < $1.key }) {
        guard let f = mb[p] else { diffs.append("only in first: \(e)"); continue }
        if e != f { diffs.append("differs:\n  \(e)\n  \(f)") }
    }
    for (p, f) in mb.sorted(by: { $0.key < $1.key }) where ma[p] == nil { diffs.append("only in second: \(f)") }
    return diffs
}

func makeStore(_ dir: String) -> SandboxStore { SandboxStore(root: dir + "/state") }

func createSandbox(_ store: SandboxStore, _ name: String, plan: String? = nil) throws -> SandboxManifest {
    try store.create(CreateOptions(name: name, profile: Profile(name: "worker"), planFile: plan, workflowID: "wf-test"))
}

@Suite("Store: manifest, create, lock, rm")
struct StoreTests {
    @Test func manifestRoundTrip() throws {
        var m = SandboxManifest(name: "box", created: "2025-01-01T00:00:00.000Z", profileName: "worker",
                                profileSource: "embedded:worker", profileTOML: Profile(name: "worker").renderTOML())
        m.status = .idle
        m.externalWorkdir = "/srv/w"
        m.repository = .init(path: "/srv/repo", worker: "w1", base: "abc123")
        m.plan = .init(sha256: String(repeating: "a", count: 64), bytes: 12, source: "/tmp/plan.md")
        var r = SandboxManifest.Run(id: 3, pid: 42, argv: ["sh", "-c", "echo \"hi\"\n"], workflowID: "wf-1", start: "s")
        r.state = .exited
        r.end = "e"
        r.exitCode = 7
        r.signal = 9
        r.wallSeconds = 1.5
        r.cpuUserSeconds = 0.25
        r.cpuSystemSeconds = 0.125
        r.peakMemoryBytes = 1 << 33
        r.oomKilled = true
        r.timedOut = true
        r.message = "m"
        m.runs = [r, SandboxManifest.Run(id: 4, pid: 43, argv: [], workflowID: "", start: "t")]
        m.runCount = 4
        m.auditSeq = 9
        m.auditHash = String(repeating: "b", count: 64)
        m.importedFrom = .object([("file", .string("x.sbx"))])
        let back = try SandboxManifest.parse(m.rendered(), file: "m")
        #expect(back == m)
        #expect(try JSONParser.parse(m.rendered())["version"] == .int(SandboxManifest.currentVersion))
    }

    @Test func newerManifestVersionIsRefused() throws {
        let m = SandboxManifest(name: "box", created: "c", profileName: "worker", profileSource: "", profileTOML: "")
        let future = m.json.setting("version", .int(99)).bytes()
        #expect(throws: SandboxError.self) { try SandboxManifest.parse(future, file: "m") }
        let wrong = m.json.setting("format", .string("other")).bytes()
        #expect(throws: SandboxError.self) { try SandboxManifest.parse(wrong, file: "m") }
    }

    @Test(arguments: ["a", "box-1", "Box_2.x", String(repeating: "x", count: 64)])
    func validNames(name: String) throws { try SandboxStore.validateName(name) }

    @Test(arguments: ["", ".", "..", ".hidden", "-x", "a/b", "a b", "a,b", "a:b", "é", String(repeating: "x", count: 65)])
    func invalidNames(name: String) {
        #expect(throws: SandboxError.self) { try SandboxStore.validateName(name) }
    }

    @Test func createLoadListRemove() throws {
        try withTempDir { dir in
            try "# the plan\n".write(toFile: dir + "/plan.md", atomically: false, encoding: .utf8)
            let store = makeStore(dir)
            let m = try createSandbox(store, "one", plan: dir + "/plan.md")
            #expect(m.plan?.sha256 == SHA256.hex(of: "# the plan\n"))
            _ = try createSandbox(store, "two")
            #expect(throws: SandboxError.self) { try createSandbox(store, "one") }
            #expect(store.names() == ["one", "two"])
            let loaded = try store.load("one")
            #expect(loaded == m)
            #expect(try NamedExec.profile(loaded) == {
                var p = Profile(name: "worker")
                p.source = loaded.profileSource
                return p
            }())
            let p = store.paths("one")
            for d in [p.upper, p.work, p.home, p.results, p.managedWorkdir, p.checkpoints] { #expect(FileSys.isDirectory(d), "\(d)") }
            var st = stat()
            #expect(lstat(p.plan, &st) == 0 && st.st_mode & 0o777 == 0o444)
            #expect(try AuditLog(path: p.audit).verify(head: (loaded.auditSeq, loaded.auditHash)).ok)
            // Nothing half-made is left in sandboxes/.
            #expect(FileSys.list(store.sandboxesDir).sorted() == ["one", "two"])

            try store.remove("one", force: false, workflowID: "wf")
            #expect(store.names() == ["two"])
            #expect(FileSys.list(store.sandboxesDir) == ["two"])
            #expect(throws: SandboxError.self) { try store.load("one") }
            #expect(throws: SandboxError.self) { try store.remove("one", force: false, workflowID: "wf") }
        }
    }

    @Test func createWithSomethingThatIsNotARepositoryWritesNothing() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            let e = #expect(throws: SandboxError.self) {
                try store.create(CreateOptions(name: "r", profile: Profile(name: "worker"),
                                               repository: .init(path: dir, worker: "w", base: nil), workflowID: "wf"))
            }
            #expect(e?.message.contains("could not be provisioned") == true, "\(String(describing: e))")
            #expect(store.names().isEmpty)
            #expect(FileSys.list(store.sandboxesDir).isEmpty, "no staging directory left either")
        }
    }

    @Test func lockRefusesASecondHolderWithWhoHoldsIt() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            _ = try createSandbox(store, "busy")
            let session = try SandboxSession.open(store: store, name: "busy", operation: "exec", workflow: "wf")
            let e = #expect(throws: SandboxError.self) {
                _ = try SandboxSession.open(store: store, name: "busy", operation: "checkpoint", workflow: "wf")
            }
            #expect(e?.message.contains("sandbox busy is in use by pid \(getpid()) (exec) since") == true, "\(e?.message ?? "")")
            #expect(e?.message.contains("wait or use another sandbox") == true)
            #expect(e?.exitCode == 125)
            #expect(SandboxLock.tryAcquire(directory: store.paths("busy").dir) == nil)
            #expect(SandboxLock.holder(directory: store.paths("busy").dir)?.operation == "exec")
            #expect(try store.info("busy").status == .running)
            session.lock.release()
            #expect(SandboxLock.holder(directory: store.paths("busy").dir) == nil)
            let again = try SandboxSession.open(store: store, name: "busy", operation: "exec", workflow: "wf")
            again.lock.release()
        }
    }

    /// An exec's finisher (which syncs its records after sandboxd has
    /// answered) holds the lock under "finish": the next session waits for it
    /// instead of being refused, and `info` reads only once it is done.
    @Test func aFinishingHolderIsWaitedForNotRefused() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            _ = try createSandbox(store, "f")
            var held = try SandboxSession.open(store: store, name: "f", operation: "exec", workflow: "wf")
            held.lock.record(SandboxLock.finishing)
            var released = Self.release(held.lock, after: 0.3)
            let before = Clock.monotonic()
            let info = try store.info("f")
            #expect(released.isSet, "info read while the finisher held the lock")
            #expect(info.holder == nil)
            #expect(Clock.monotonic() - before >= 0.25)
            // A session after a finisher still at work waits, then gets the lock.
            held = try SandboxSession.open(store: store, name: "f", operation: "exec", workflow: "wf")
            held.lock.record(SandboxLock.finishing)
            released = Self.release(held.lock, after: 0.3)
            let next = try SandboxSession.open(store: store, name: "f", operation: "checkpoint", workflow: "wf")
            #expect(released.isSet, "the session took a lock its finisher still held")
            next.lock.release()
        }
    }

    final class Flag: @unchecked Sendable {
        private let m = NSLock()
        private var value = false
        var isSet: Bool { m.withLock { value } }
        func set() { m.withLock { value = true } }
    }

    /// Releases `lock` from another thread after `delay` seconds; the flag is set just before.
    static func release(_ lock: SandboxLock, after delay: Double) -> Flag {
        let flag = Flag()
        nonisolated(unsafe) let lock = lock
        Thread {
            Thread.sleep(forTimeInterval: delay)
            flag.set()
            lock.release()
        }.start()
        return flag
    }

    /// A run left "running" by a killed sandboxd is marked interrupted by the next look, with an audit line.
    @Test func staleRunningRunIsMarkedInterrupted() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            _ = try createSandbox(store, "s")
            let session = try SandboxSession.open(store: store, name: "s", operation: "exec", workflow: "wf")
            session.manifest.runs.append(.init(id: 1, pid: 999_999, argv: ["x"], workflowID: "wf-run", start: Clock.iso()))
            session.manifest.runCount = 1
            session.manifest.status = .running
            try session.save()
            session.lock.release()
            let info = try store.info("s")
            #expect(info.status == .interrupted)
            #expect(info.manifest.runs.last?.state == .interrupted)
            let lines = try AuditLog(path: store.paths("s").audit).lines()
            #expect(lines.last?["event"]?.stringValue == "run.interrupted")
            #expect(lines.last?["workflow"]?.stringValue == "wf-run")
            #expect(try AuditLog(path: store.paths("s").audit).verify(head: (info.manifest.auditSeq, info.manifest.auditHash)).ok)
        }
    }

    /// A sandboxd killed after a run's start line (the manifest is written
    /// only when a run ends): the next session takes the line in and marks
    /// the run interrupted, and the chain still verifies.
    @Test func runStartedButNeverEndedIsMarkedInterrupted() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            _ = try createSandbox(store, "s")
            let session = try SandboxSession.open(store: store, name: "s", operation: "exec", workflow: "wf")
            try session.record("exec.start", workflow: "wf-run", [("run", .int(1)), ("argv", .strings(["sleep", "9"]))])
            #expect(session.manifest.status == .running)
            session.lock.release()
            #expect(try store.load("s").runs.isEmpty, "the manifest on disk does not know of the run yet")
            let info = try store.info("s")
            #expect(info.status == .interrupted)
            #expect(info.manifest.runCount == 1)
            #expect(info.manifest.runs.last?.state == .interrupted)
            #expect(info.manifest.runs.last?.argv == ["sleep", "9"])
            #expect(info.manifest.runs.last?.message?.contains("stopped before the run ended") == true)
            #expect(try store.load("s").runs.last?.state == .interrupted, "the repair is saved")
            let log = AuditLog(path: store.paths("s").audit)
            #expect(try log.lines().last?["event"]?.stringValue == "run.interrupted")
            #expect(try log.verify(head: (info.manifest.auditSeq, info.manifest.auditHash)).ok)
            // The next run gets the next id.
            let next = try SandboxSession.open(store: store, name: "s", operation: "exec", workflow: "wf")
            #expect(next.manifest.runCount == 1)
            try next.record("exec.start", workflow: "wf", [("run", .int(next.manifest.runCount + 1)), ("argv", .strings(["true"]))])
            #expect(next.manifest.runs.map(\.id) == [1, 2] && next.manifest.runs.last?.state == .running)
            next.lock.release()
        }
    }

    /// A run in progress shows in `info` as running (from its audit line), without being touched.
    @Test func runInProgressShowsAsRunning() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            _ = try createSandbox(store, "s")
            let session = try SandboxSession.open(store: store, name: "s", operation: "exec", workflow: "wf")
            try session.record("exec.start", workflow: "wf", [("run", .int(1)), ("argv", .strings(["make"]))])
            let info = try store.info("s")
            #expect(info.status == .running)
            #expect(info.manifest.runs.last?.state == .running)
            #expect(info.manifest.runs.last?.argv == ["make"])
            session.lock.release()
        }
    }

    /// The manifest follows the log line by line: start, end with resources,
    /// failure, and the head after each.
    @Test func manifestAppliesAuditLines() throws {
        var m = SandboxManifest(name: "s", created: "t", profileName: "worker", profileSource: "embedded", profileTOML: "")
        func line(_ seq: Int64, _ fields: [(String, JSON)]) -> AuditLog.Line {
            AuditLog.Line(seq: seq, hash: "h\(seq)", json: .object([("seq", .int(seq)), ("time", .string("T\(seq)")), ("pid", .int(42)), ("workflow", .string("wf"))] + fields), end: seq * 100)
        }
        m.apply(line(1, [("event", .string("exec.start")), ("run", .int(1)), ("argv", .strings(["a", "b"]))]))
        #expect(m.status == .running && m.runCount == 1 && m.runs.count == 1)
        #expect(m.runs[0] == { var r = SandboxManifest.Run(id: 1, pid: 42, argv: ["a", "b"], workflowID: "wf", start: "T1"); r.state = .running; return r }())
        m.apply(line(2, [("event", .string("exec.end")), ("run", .int(1)), ("exit_code", .int(3)), ("signal", .int(9)),
                         ("wall_seconds", .double(1.5)), ("cpu_user_seconds", .double(0.25)), ("cpu_system_seconds", .double(0.5)),
                         ("peak_memory_bytes", .uint(4096)), ("timed_out", .bool(true)), ("oom_killed", .bool(true))]))
        #expect(m.status == .idle)
        let r = m.runs[0]
        #expect(r.state == .exited && r.end == "T2" && r.exitCode == 3 && r.signal == 9 && r.wallSeconds == 1.5)
        #expect(r.cpuUserSeconds == 0.25 && r.cpuSystemSeconds == 0.5 && r.peakMemoryBytes == 4096 && r.timedOut && r.oomKilled)
        m.apply(line(3, [("event", .string("exec.start")), ("run", .int(2)), ("argv", .strings(["c"]))]))
        m.apply(line(4, [("event", .string("exec.failed")), ("run", .int(2)), ("exit_code", .int(125)), ("error", .string("no"))]))
        #expect(m.runs[1].state == .failed && m.runs[1].message == "no" && m.status == .idle)
        m.apply(line(5, [("event", .string("checkpoint"))]))
        #expect(m.auditSeq == 5 && m.auditHash == "h5" && m.auditSize == 500 && m.runs.count == 2)
        // A replayed start that the manifest already has changes nothing.
        m.apply(line(6, [("event", .string("exec.start")), ("run", .int(2)), ("argv", .strings(["x"]))]))
        #expect(m.runs.count == 2 && m.runs[1].argv == ["c"])
        // The manifest keeps the last runs only; the count goes on.
        for id in Int64(3)...20 { m.apply(line(id + 4, [("event", .string("exec.start")), ("run", .int(id))])) }
        #expect(m.runs.count == SandboxManifest.keptRuns && m.runs.last?.id == 20 && m.runCount == 20)
    }

    @Test func linesAfterReadsTheTailOfTheLog() throws {
        try withTempDir { dir in
            let log = AuditLog(path: dir + "/audit.jsonl")
            #expect(try log.lines(after: 0).isEmpty)
            var written: [AuditLog.Line] = []
            for i in 0..<300 {
                written.append(try log.append(event: "e\(i)", sandbox: "s", workflow: "wf", [("pad", .string(String(repeating: "x", count: 100)))]))
            }
            #expect(try log.lines(after: 300).isEmpty)
            let tail = try log.lines(after: 297)
            #expect(tail.map(\.seq) == [298, 299, 300])
            #expect(tail.map(\.hash) == written.suffix(3).map(\.hash))
            #expect(tail.last?.end == written.last?.end)
            // Far back: the reader widens its window past 8 KiB.
            #expect(try log.lines(after: 10).count == 290)
            #expect(try log.lines(after: 0).count == 300)
            // A torn last line is not a line yet.
            let fd = open(dir + "/audit.jsonl", O_WRONLY | O_APPEND)
            _ = write(fd, "{\"seq\":301,", 12)
            close(fd)
            #expect(try log.lines(after: 299).map(\.seq) == [300])
        }
    }

    @Test func atomicReplaceLeavesNoTemporaryFiles() throws {
        try withTempDir { dir in
            let path = dir + "/m.json"
            try writeFileAtomically(path, Array("one".utf8))
            let log = open(dir + "/log", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            #expect(log >= 0)
            let batch = DeferredSync()
            batch.add(log)
            let pending = try FileSys.replacement(path, Array("two".utf8), syncedWith: batch)
            #expect(try FileSys.read(path) == Array("one".utf8), "not in place before its sync")
            batch.start()
            try pending.commit()
            #expect(try FileSys.read(path) == Array("two".utf8))
            #expect(FileSys.list(dir).sorted() == ["log", "m.json"])
        }
    }

    /// A manifest damaged by a power loss before its deferred fsync: the previous version is used.
    @Test func damagedManifestFallsBackToPrevious() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            let m = try createSandbox(store, "s")
            let p = store.paths("s")
            try FileManager.default.copyItem(atPath: p.manifest, toPath: p.manifest + ".prev")
            try "".write(toFile: p.manifest, atomically: false, encoding: .utf8)
            #expect(try store.load("s") == m)
            // The next session writes the manifest back and drops the old copy.
            let session = try SandboxSession.open(store: store, name: "s", operation: "exec", workflow: "wf")
            session.lock.release()
            #expect(!FileSys.exists(p.manifest + ".prev"))
            #expect(try SandboxManifest.parse(try #require(try FileSys.read(p.manifest)), file: p.manifest) == m)
        }
    }

    @Test func namedExecSplitsNameAndCommand() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            _ = try createSandbox(store, "box")
            #expect(NamedExec.split(["box", "--", "ls", "-l"], store: store)! == ("box", ["ls", "-l"]))
            #expect(NamedExec.split(["box", "ls"], store: store)! == ("box", ["ls"]))
            #expect(NamedExec.split(["box"], store: store) == nil)
            #expect(NamedExec.split(["--", "box", "ls"], store: store) == nil)
            #expect(NamedExec.split(["other", "--", "ls"], store: store) == nil)
        }
    }

    @Test func namedRequestCarriesPersistence() throws {
        try withTempDir { dir in
            try "p".write(toFile: dir + "/plan.md", atomically: false, encoding: .utf8)
            let store = makeStore(dir)
            let m = try createSandbox(store, "box", plan: dir + "/plan.md")
            let p = store.paths("box")
            let r = try NamedExec.request(ExecRequest(argv: ["true"], workdir: "/elsewhere"), manifest: m, paths: p, store: store)
            #expect(r.workdir == p.managedWorkdir)
            #expect(r.persistence == Persistence(name: "box", rootChanges: p.rootChanges, home: p.home, plan: p.plan, results: p.results))
            let plan = try Planner().plan(profile: try NamedExec.profile(m), request: r)
            // /usr, /etc and /opt sit on the root filesystem here: one overlay of "/" serves all three.
            for dir in ["usr", "etc", "opt"] where FileSys.isDirectory("/" + dir) {
                #expect(plan.mounts.contains { $0.kind == .overlay && $0.target == "/" + dir && $0.source == "/"
                    && $0.data == "\(p.upper)\n\(p.work)/.shared\n\(dir)" })
            }
            #expect(plan.environment.contains("SANDBOXD_SANDBOX=box"))
        }
    }

    @Test func defaultRoot() {
        #expect(SandboxStore.defaultRoot(environment: ["SANDBOXD_HOME": "/x/y/"], cwd: "/c", uid: 0, home: "/root") == "/x/y")
        #expect(SandboxStore.defaultRoot(environment: ["SANDBOXD_HOME": "rel/../s"], cwd: "/c", uid: 0, home: "/root") == "/c/s")
        #expect(SandboxStore.defaultRoot(environment: [:], cwd: "/c", uid: 0, home: "/root") == "/var/lib/sandboxd")
        #expect(SandboxStore.defaultRoot(environment: [:], cwd: "/c", uid: 1000, home: "/home/u") == "/home/u/.local/share/sandboxd")
    }
}

@Suite("Store: audit log")
struct StoreAuditTests {
    func makeLog(_ dir: String, lines: Int = 6) throws -> (AuditLog, AuditLog.Line) {
        let log = AuditLog(path: dir + "/audit.jsonl")
        var last: AuditLog.Line? = nil
        for i in 0..<lines {
            last = try log.append(event: "e\(i)", sandbox: "s", workflow: "wf-\(i % 2)", [("n", .int(Int64(i))), ("text", .string("line \"\(i)\"\n"))])
        }
        return (log, last!)
    }

    func rewrite(_ path: String, _ change: (inout [String]) -> Void) throws {
        var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        change(&lines)
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: false, encoding: .utf8)
    }

    @Test func intactChainVerifies() throws {
        try withTempDir { dir in
            let (log, head) = try makeLog(dir)
            let v = try log.verify(head: (head.seq, head.hash))
            #expect(v.ok, "\(v.problems)")
            #expect(v.lines == 6)
            #expect(v.head == head.hash)
            let lines = try log.lines()
            #expect(lines.map { $0["seq"]?.intValue } == [1, 2, 3, 4, 5, 6])
            #expect(lines.allSatisfy { $0["workflow"]?.stringValue?.hasPrefix("wf-") == true })
            #expect(lines[0]["prev"]?.stringValue == AuditLog.genesis)
        }
    }

    @Test func editedLineIsDetected() throws {
        try withTempDir { dir in
            let (log, head) = try makeLog(dir)
            try rewrite(log.path) { $0[2] = $0[2].replacingOccurrences(of: "\"n\":2", with: "\"n\":7") }
            let v = try log.verify(head: (head.seq, head.hash))
            #expect(!v.ok)
            #expect(v.problems.contains { $0.contains("line 3") && $0.contains("does not match its hash") }, "\(v.problems)")
        }
    }

    @Test func editedLineWithRecomputedHashIsDetectedByTheChain() throws {
        try withTempDir { dir in
            let (log, head) = try makeLog(dir)
            try rewrite(log.path) { lines in
                // Re-hash the edited line consistently: the next line's prev no longer matches.
                let edited = lines[2].replacingOccurrences(of: "\"n\":2", with: "\"n\":7")
                let hash = try! JSONParser.parse(edited)["hash"]!.stringValue!
                let body = String(edited.dropLast(",\"hash\":\"\(hash)\"}".count)) + "}"
                lines[2] = String(body.dropLast()) + ",\"hash\":\"\(SHA256.hex(of: body))\"}"
            }
            let v = try log.verify(head: (head.seq, head.hash))
            #expect(!v.ok)
            #expect(v.problems.contains { $0.contains("line 4") && $0.contains("prev") }, "\(v.problems)")
        }
    }

    @Test func deletedLineIsDetected() throws {
        try withTempDir { dir in
            let (log, head) = try makeLog(dir)
            try rewrite(log.path) { $0.remove(at: 3) }
            let v = try log.verify(head: (head.seq, head.hash))
            #expect(!v.ok)
            #expect(v.problems.contains { $0.contains("seq 5 where 4 was expected") }, "\(v.problems)")
        }
    }

    @Test func reorderedLinesAreDetected() throws {
        try withTempDir { dir in
            let (log, head) = try makeLog(dir)
            try rewrite(log.path) { $0.swapAt(1, 2) }
            let v = try log.verify(head: (head.seq, head.hash))
            #expect(!v.ok)
            #expect(v.problems.contains { $0.contains("prev does not match") }, "\(v.problems)")
        }
    }

    @Test func truncatedTailIsDetectedAgainstTheManifestHead() throws {
        try withTempDir { dir in
            let (log, head) = try makeLog(dir)
            try rewrite(log.path) { $0.removeLast(2) }
            #expect(try log.verify().ok)  // the chain alone cannot tell
            let v = try log.verify(head: (head.seq, head.hash))
            #expect(!v.ok)
            #expect(v.problems.contains { $0.contains("head recorded in the manifest") }, "\(v.problems)")
        }
    }

    /// A line torn by a writer killed mid-write is dropped by the next append, and the chain goes on.
    @Test func tornLastLineIsRepairedOnAppend() throws {
        try withTempDir { dir in
            let (log, _) = try makeLog(dir, lines: 3)
            let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: log.path))
            try fh.seekToEnd()
            try fh.write(contentsOf: Data("{\"seq\":4,\"ti".utf8))
            try fh.close()
            #expect(try !log.verify().ok)
            let line = try log.append(event: "after", sandbox: "s", workflow: "wf")
            #expect(line.seq == 4)
            let v = try log.verify(head: (line.seq, line.hash))
            #expect(v.ok, "\(v.problems)")
            #expect(v.lines == 4)
        }
    }

    @Test func workflowIDs() {
        #expect(AuditLog.workflowID("given", environment: ["SANDBOXD_WORKFLOW_ID": "env"]) == "given")
        #expect(AuditLog.workflowID(nil, environment: ["SANDBOXD_WORKFLOW_ID": "env"]) == "env")
        let a = AuditLog.workflowID(nil, environment: [:]), b = AuditLog.workflowID(nil, environment: [:])
        #expect(a.hasPrefix("wf-") && a != b)
    }
}

@Suite("Store: checkpoints and rewind")
struct StoreCheckpointTests {
    /// Fills the live areas with a bit of everything: modes, symlinks, hard links, xattrs, whiteouts.
    func populate(_ p: SandboxPaths, _ tag: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: p.upper + "/usr/local/bin", withIntermediateDirectories: true)
        try "#!/bin/sh\necho \(tag)\n".write(toFile: p.upper + "/usr/local/bin/tool", atomically: false, encoding: .utf8)
        chmod(p.upper + "/usr/local/bin/tool", 0o755)
        try fm.createDirectory(atPath: p.upper + "/etc/opaque", withIntermediateDirectories: true)
        #expect(FileSys.setXattr(p.upper + "/etc/opaque", "user.overlay.opaque", Array("y".utf8)))
        if geteuid() == 0 { #expect(mknod(p.upper + "/etc/deleted", S_IFCHR | 0o000, 0) == 0) }
        try "home \(tag)\n".write(toFile: p.home + "/notes.txt", atomically: false, encoding: .utf8)
        chmod(p.home + "/notes.txt", 0o600)
        try fm.createDirectory(atPath: p.managedWorkdir + "/src", withIntermediateDirectories: true)
        try "int main;\n".write(toFile: p.managedWorkdir + "/src/main.c", atomically: false, encoding: .utf8)
        #expect(link(p.managedWorkdir + "/src/main.c", p.managedWorkdir + "/src/hard.c") == 0)
        #expect(symlink("src/main.c", p.managedWorkdir + "/link") == 0)
        if geteuid() == 0 { #expect(lchown(p.managedWorkdir + "/src/main.c", 100_000, 100_000) == 0) }
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_000_000_000, tv_nsec: 123_456_789)]
        utimensat(AT_FDCWD, p.managedWorkdir + "/src", &times, AT_SYMLINK_NOFOLLOW)
    }

    func snapshot(_ p: SandboxPaths) -> [[TreeEntry]] {
        [treeSnapshot(p.upper), treeSnapshot(p.home), treeSnapshot(p.managedWorkdir)]
    }

    @Test func checkpointThenRewindRestoresExactly() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            _ = try createSandbox(store, "cp")
            let p = store.paths("cp")
            try populate(p, "one")
            let before = snapshot(p)
            var s = try SandboxSession.open(store: store, name: "cp", operation: "checkpoint", workflow: "wf")
            let cp = try s.checkpoint(label: "first", workflow: "wf")
            #expect(cp.id == 1)
            #expect(cp.files > 5)
            #expect(throws: SandboxError.self) { _ = try s.checkpoint(label: "first", workflow: "wf") }
            #expect(throws: SandboxError.self) { _ = try s.checkpoint(label: "12", workflow: "wf") }
            s.lock.release()

            // Change everything: contents, deletions, additions, modes.
            try "changed\n".write(toFile: p.home + "/notes.txt", atomically: false, encoding: .utf8)
            try FileManager.default.removeItem(atPath: p.managedWorkdir + "/src")
            try "new".write(toFile: p.upper + "/usr/new", atomically: false, encoding: .utf8)
            chmod(p.upper + "/usr/local/bin/tool", 0o700)
            #expect(treeDiff(before[0], treeSnapshot(p.upper)).count > 0)

            s = try SandboxSession.open(store: store, name: "cp", operation: "rewind", workflow: "wf")
            let back = try s.rewind(to: "first", workflow: "wf")
            #expect(back.id == 1)
            #expect(throws: SandboxError.self) { _ = try s.rewind(to: "nope", workflow: "wf") }
            s.lock.release()
            let after = snapshot(p)
            for i in 0..<3 { #expect(treeDiff(before[i], after[i]).isEmpty, "\(treeDiff(before[i], after[i]))") }
            // The checkpoint stays, and is not affected by writes to the live tree (no shared inodes).
            try "again\n".write(toFile: p.home + "/notes.txt", atomically: false, encoding: .utf8)
            #expect(try String(contentsOfFile: p.checkpoints + "/1/home/notes.txt", encoding: .utf8) == "home one\n")
            #expect(try store.checkpoints("cp").map(\.label) == ["first"])
            // No staging left behind.
            #expect(!FileSys.list(p.dir).contains { $0.hasPrefix(".") })
            #expect(!FileSys.list(p.checkpoints).contains { $0.hasPrefix(".") })
            let m = try store.load("cp")
            #expect(try AuditLog(path: p.audit).verify(head: (m.auditSeq, m.auditHash)).ok)
            #expect(try AuditLog(path: p.audit).lines().map { $0["event"]?.stringValue ?? "" } == ["create", "checkpoint", "rewind"])
        }
    }

    /// sandboxd killed in the middle of a rewind: the next session (here: inspect) finishes it.
    @Test func interruptedRewindIsFinished() throws {
        try withTempDir { dir in
            let store = makeStore(dir)
            _ = try createSandbox(store, "r")
            let p = store.paths("r")
            try populate(p, "one")
            let before = snapshot(p)
            let s = try SandboxSession.open(store: store, name: "r", operation: "checkpoint", workflow: "wf")
            _ = try s.checkpoint(label: nil, workflow: "wf")
            try "two\n".write(toFile: p.home + "/notes.txt", atomically: false, encoding: .utf8)
            try "new\n".write(toFile: p.managedWorkdir + "/added", atomically: false, encoding: .utf8)
            try FileManager.default.removeItem(atPath: p.upper + "/usr/local/bin/tool")
            // The journal is written, then only HOME is synced before the "kill".
            try writeFileAtomically(p.rewindJournal, JSON.object([("checkpoint", .int(1))]).bytes())
            _ = try FileSys.syncTree(p.checkpoints + "/1/home", p.home)
            s.lock.release()

            let info = try store.info("r")
            #expect(!FileSys.exists(p.rewindJournal))
            let after = snapshot(p)
            for i in 0..<3 { #expect(treeDiff(before[i], after[i]).isEmpty, "\(treeDiff(before[i], after[i]))") }
            #expect(try AuditLog(path: p.audit).lines().last?["event"]?.stringValue == "rewind.completed")
            #expect(try AuditLog(path: p.audit).verify(head: (info.manifest.auditSeq, info.manifest.auditHash)).ok)
        }
    }

    /// syncTree converges on the source whatever the destination holds, and leaves equal files alone.
    @Test func syncTreeIsExactAndMinimal() throws {
        try withTempDir { dir in
            let src = dir + "/src", dst = dir + "/dst"
            let fm = FileManager.default
            try fm.createDirectory(atPath: src + "/keep/deep", withIntermediateDirectories: true)
            try "same".write(toFile: src + "/keep/same.txt", atomically: false, encoding: .utf8)
            try "orig".write(toFile: src + "/keep/changed.txt", atomically: false, encoding: .utf8)
            try "f".write(toFile: src + "/was-file", atomically: false, encoding: .utf8)
            try fm.createDirectory(atPath: src + "/was-dir", withIntermediateDirectories: true)
            try "h".write(toFile: src + "/h1", atomically: false, encoding: .utf8)
            #expect(link(src + "/h1", src + "/h2") == 0)
            #expect(symlink("keep/same.txt", src + "/link") == 0)
            try fm.createDirectory(atPath: src + "/opaque", withIntermediateDirectories: true)
            _ = try FileSys.copyTree(src, dst)
            var st = stat()
            lstat(dst + "/keep/same.txt", &st)
            let keptInode = st.st_ino

            // Diverge: change a file keeping its size and mtime, add, remove, change types, links and xattrs.
            var times = [timespec(), timespec()]
            lstat(dst + "/keep/changed.txt", &st)
            times = [st.st_atim, st.st_mtim]
            try "ORIG".write(toFile: dst + "/keep/changed.txt", atomically: false, encoding: .utf8)
            utimensat(AT_FDCWD, dst + "/keep/changed.txt", &times, 0)
            try "extra".write(toFile: dst + "/keep/deep/extra", atomically: false, encoding: .utf8)
            try fm.removeItem(atPath: dst + "/was-file")
            try fm.createDirectory(atPath: dst + "/was-file/inner", withIntermediateDirectories: true)
            try fm.removeItem(atPath: dst + "/was-dir")
            #expect(symlink("/etc", dst + "/was-dir") == 0)
            try fm.removeItem(atPath: dst + "/h2")
            try "h".write(toFile: dst + "/h2", atomically: false, encoding: .utf8)
            try fm.removeItem(atPath: dst + "/link")
            #expect(symlink("elsewhere", dst + "/link") == 0)
            #expect(FileSys.setXattr(dst + "/opaque", "user.overlay.opaque", Array("y".utf8)))
            chmod(dst + "/keep", 0o500)

            _ = try FileSys.syncTree(src, dst)
            #expect(treeDiff(treeSnapshot(src), treeSnapshot(dst)).isEmpty, "\(treeDiff(treeSnapshot(src), treeSnapshot(dst)))")
            lstat(dst + "/keep/same.txt", &st)
            #expect(st.st_ino == keptInode)
            var a = stat(), b = stat()
            lstat(dst + "/h1", &a)
            lstat(dst + "/h2", &b)
            #expect(a.st_ino == b.st_ino)
            // Running it again changes nothing.
            _ = try FileSys.syncTree(src, dst)
            #expect(treeDiff(treeSnapshot(src), treeSnapshot(dst)).isEmpty)
        }
    }

    /// A name that is not valid UTF-8 cannot be carried as a string: copies
    /// (checkpoints, exports) refuse it by name instead of skipping it, and
    /// removal and rewind (entries missing from the source) take it away byte for byte.
    @Test func namesThatAreNotUTF8AreRefusedOrRemovedNeverSkipped() throws {
        try withTempDir { dir in
            func makeRaw(_ parent: String, _ name: [UInt8]) {
                let path = Array(parent.utf8) + [0x2F] + name
                let fd = open(path.map { CChar(bitPattern: $0) } + [0], O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
                #expect(fd >= 0)
                close(fd)
            }
            let src = dir + "/src", dst = dir + "/dst"
            try FileSys.makeDirectories(src + "/sub")
            try writeFileAtomically(src + "/good", Array("g".utf8))
            makeRaw(src + "/sub", [0x63, 0x61, 0x66, 0xE9])  // "caf\xe9", Latin-1
            let e = #expect(throws: SandboxError.self) { _ = try FileSys.copyTree(src, dir + "/copy") }
            #expect(e?.message.contains("sub/caf\\xE9: the name is not valid UTF-8") == true, "\(e?.message ?? "")")
            #expect(throws: SandboxError.self) { _ = try FileSys.entries(src + "/sub") }
            #expect(FileSys.list(src + "/sub") == ["caf\u{FFFD}"], "list (sandboxd's own files) still reads it")

            // Rewind-style sync: the destination's undecodable entry is not in the source, so it goes.
            try FileSys.makeDirectories(dst + "/deep")
            makeRaw(dst, [0x62, 0x61, 0x64, 0xFF])
            makeRaw(dst + "/deep", [0xC3])
            try FileSys.removeTree(src + "/sub")
            _ = try FileSys.syncTree(src, dst)
            #expect(try FileSys.entries(dst) == ["good"])

            // rm -rf gets through such names too.
            try FileSys.makeDirectories(dir + "/gone/a")
            makeRaw(dir + "/gone/a", [0x80, 0x81])
            try FileSys.removeTree(dir + "/gone")
            #expect(!FileSys.exists(dir + "/gone"))
        }
    }

    @Test func copyTreePreservesEverything() throws {
        try withTempDir { dir in
            let src = dir + "/src"
            try FileManager.default.createDirectory(atPath: src + "/a/b", withIntermediateDirectories: true)
            try "x".write(toFile: src + "/a/f", atomically: false, encoding: .utf8)
            chmod(src + "/a/f", 0o640)
            #expect(link(src + "/a/f", src + "/a/b/g") == 0)
            #expect(symlink("../f", src + "/a/b/l") == 0)
            #expect(symlink("/nonexistent/abs", src + "/abs") == 0)
            #expect(mkfifo(src + "/fifo", 0o600) == 0)
            #expect(FileSys.setXattr(src + "/a/f", "user.test", [1, 2, 3]))
            chmod(src + "/a/b", 0o500)
            let stats = try FileSys.copyTree(src, dir + "/dst")
            #expect(stats.hardLinks == 1)
            #expect(treeDiff(treeSnapshot(src), treeSnapshot(dir + "/dst")).isEmpty, "\(treeDiff(treeSnapshot(src), treeSnapshot(dir + "/dst")))")
            var s1 = stat(), s2 = stat()
            lstat(dir + "/dst/a/f", &s1)
            lstat(dir + "/dst/a/b/g", &s2)
            #expect(s1.st_ino == s2.st_ino)
            lstat(src + "/a/f", &s2)
            #expect(s1.st_ino != s2.st_ino)
            try FileSys.removeTree(dir + "/dst")
            #expect(!FileSys.exists(dir + "/dst"))
            chmod(src + "/a/b", 0o755)
        }
    }
}
