import Foundation
import Testing

@testable import SandboxExt

/// The gate through the built binary: every class of violation is rejected with nothing changed
/// in the central repository; a clean change is accepted and imported.
@Suite("Workspace gate")
struct WorkspaceGateTests {
    /// A repository, a worker's worktree, optional claims; `work` edits the worktree. Returns the
    /// gate's exit status, its JSON report, and whether the central repository stayed byte-for-byte
    /// the same.
    struct Outcome {
        var status: Int32
        var report: [String: Any]
        var unchanged: Bool
        var changed: [String]
        var stderr: String
        var violations: [(rule: String, path: String?)] {
            (report["violations"] as? [[String: Any]] ?? []).map { ($0["rule"] as? String ?? "", $0["path"] as? String) }
        }
        func has(_ rule: String, _ path: String?) -> Bool { violations.contains { $0.rule == rule && $0.path == path } }
    }

    static func gate(worker: String = "w1", claims: [String] = [], extraFiles: [String: String] = [:],
                     _ work: (WorktreeInfo) throws -> Void) throws -> Outcome {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles.merging(extraFiles) { $1 })
            let info = try Workspace.provision(repo: repo, worker: worker, stateDir: state)
            if !claims.isEmpty { try LockStore(repo: repo).acquire(worker: worker, patterns: claims) }
            try work(info)
            let before = try WS.snapshot(repo: repo)
            let r = try WS.sandboxd(["gate", "--repo", repo, "--worker", worker, "--json", "--run", "run-7"], stateDir: state)
            let after = try WS.snapshot(repo: repo)
            let report = (try? WS.json(r.stdout) as? [String: Any]) ?? [:]
            return Outcome(status: r.status, report: report, unchanged: before == after,
                           changed: WS.differences(before, after), stderr: r.stderr)
        }
    }

    static func expectRejected(_ o: Outcome, _ rule: String, _ path: String?, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(o.status == 1, "exit \(o.status): \(o.stderr)", sourceLocation: sourceLocation)
        #expect(o.report["passed"] as? Bool == false, sourceLocation: sourceLocation)
        #expect(o.has(rule, path), "expected \(rule) on \(path ?? "(whole change)"), got \(o.violations)", sourceLocation: sourceLocation)
        #expect(o.unchanged, "central repository changed: \(o.changed)", sourceLocation: sourceLocation)
        #expect(o.report["result"] is NSNull, sourceLocation: sourceLocation)
    }

    @Test("forbidden paths are rejected (modified, added, deleted)")
    func forbidden() throws {
        var o = try Self.gate { w in try WS.write(w.path + "/.github/workflows/ci.yml", "on: [push, pull_request]\n") }
        Self.expectRejected(o, "forbidden-path", ".github/workflows/ci.yml")
        o = try Self.gate { w in try WS.write(w.path + "/CODEOWNERS", "* @me\n") }
        Self.expectRejected(o, "forbidden-path", "CODEOWNERS")
        o = try Self.gate { w in
            try WS.git(w.path, "rm", "-q", ".github/workflows/ci.yml")
            try WS.git(w.path, "commit", "-qm", "drop CI")
        }
        Self.expectRejected(o, "forbidden-path", ".github/workflows/ci.yml")
    }

    @Test("existing tests may not be modified or deleted; new tests are fine")
    func tests() throws {
        var o = try Self.gate { w in try WS.write(w.path + "/Tests/FooTests.swift", "// weakened\n") }
        Self.expectRejected(o, "test-modified", "Tests/FooTests.swift")
        o = try Self.gate { w in
            try WS.git(w.path, "rm", "-q", "Tests/FooTests.swift")
            try WS.git(w.path, "commit", "-qm", "no more tests")
        }
        Self.expectRejected(o, "test-deleted", "Tests/FooTests.swift")
        o = try Self.gate(extraFiles: ["pkg/test_util.py": "def test(): pass\n"]) { w in
            try WS.write(w.path + "/pkg/test_util.py", "def test(): assert True\n")
        }
        Self.expectRejected(o, "test-modified", "pkg/test_util.py")
        o = try Self.gate { w in try WS.write(w.path + "/Tests/BarTests.swift", "// new test\n") }
        #expect(o.status == 0, "\(o.violations) \(o.stderr)")
    }

    @Test("with claims, only claimed paths may change")
    func claims() throws {
        let o = try Self.gate(claims: ["src/a.swift", "docs/**"]) { w in
            try WS.write(w.path + "/src/a.swift", "let a = 10\n")
            try WS.write(w.path + "/docs/new.md", "new\n")
            try WS.write(w.path + "/src/b.swift", "let b = 20\n")
            try WS.write(w.path + "/src/c.swift", "let c = 30\n")
        }
        Self.expectRejected(o, "unclaimed-path", "src/b.swift")
        #expect(o.has("unclaimed-path", "src/c.swift"))
        #expect(!o.has("unclaimed-path", "src/a.swift"))
        #expect(!o.has("unclaimed-path", "docs/new.md"))
        #expect(o.report["claims"] as? [String] == ["docs/**", "src/a.swift"])
    }

    @Test("claims given by the launcher are enforced even after the locks are gone")
    func explicitClaims() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let info = try Workspace.provision(repo: repo, worker: "w1", stateDir: state)
            try WS.write(info.path + "/src/a.swift", "x\n")
            try WS.write(info.path + "/docs/guide.md", "y\n")
            var r = try WS.sandboxd(["gate", "--repo", repo, "--worker", "w1", "--claim", "src/**", "--json"], stateDir: state)
            #expect(r.status == 1)
            let report = try #require(try WS.json(r.stdout) as? [String: Any])
            #expect(report["claims"] as? [String] == ["src/**"])
            #expect((report["violations"] as? [[String: Any]])?.first?["path"] as? String == "docs/guide.md")
            let viaLibrary = try Gate.run(repo: repo, worker: "w1", claims: ["src/**", "docs/*.md"], stateDir: state)
            #expect(viaLibrary.passed, "\(viaLibrary.text)")
            r = try WS.sandboxd(["lock", "list", "--repo", repo], stateDir: state)
            #expect(r.stdout.contains("no locks"))
        }
    }

    @Test("size limits: lines and bytes (binary content counts whole)")
    func size() throws {
        var o = try Self.gate { w in
            try WS.write(w.path + "/src/big.swift", (0..<6000).map { "let v\($0) = \($0)" }.joined(separator: "\n") + "\n")
        }
        Self.expectRejected(o, "max-lines", nil)
        o = try Self.gate { w in
            var bytes = [UInt8](repeating: 0, count: 2 << 20)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: (i &* 2654435761) >> 13) }
            try FileManager.default.createDirectory(atPath: w.path + "/assets", withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: w.path + "/assets/blob.bin"))
        }
        Self.expectRejected(o, "max-bytes", nil)
    }

    @Test("every commit is checked: a forbidden change reverted later is still rejected")
    func history() throws {
        let o = try Self.gate { w in
            try WS.write(w.path + "/.github/workflows/ci.yml", "evil\n")
            try WS.git(w.path, "commit", "-qam", "sneak")
            try WS.write(w.path + "/.github/workflows/ci.yml", "on: push\n")
            try WS.git(w.path, "commit", "-qam", "hide it")
        }
        Self.expectRejected(o, "forbidden-path", ".github/workflows/ci.yml")
        let v = (o.report["violations"] as? [[String: Any]])?.first
        #expect((v?["commit"] as? String)?.count == 40)
        #expect(o.report["commitsChecked"] as? Int == 2)
    }

    @Test("work that does not continue the branch is rejected")
    func unrelatedHistory() throws {
        let o = try Self.gate { w in
            try WS.git(w.path, "checkout", "-q", "--orphan", "unrelated")
            try WS.git(w.path, "commit", "-qm", "unrelated history")
        }
        Self.expectRejected(o, "history", nil)
    }

    @Test("a clean change passes: branch moved, uncommitted work committed naming worker and run, objects imported")
    func pass() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let base = try WS.git(repo, "rev-parse", "HEAD")
            let info = try Workspace.provision(repo: repo, worker: "w1", stateDir: state)
            try LockStore(repo: repo).acquire(worker: "w1", patterns: ["src/**", "Tests/BarTests.swift"])
            try WS.write(info.path + "/src/a.swift", "let a = 100\n")
            try WS.git(info.path, "commit", "-qam", "worker: change a")
            let workerCommit = try WS.git(info.path, "rev-parse", "HEAD")
            try WS.write(info.path + "/Tests/BarTests.swift", "// new\n")   // untracked
            try WS.git(info.path, "rm", "-q", "src/b.swift")                 // staged deletion
            try WS.write(info.path + "/src/c.swift", "let c = 1\n")
            try WS.git(info.path, "add", "src/c.swift")
            try WS.write(info.path + "/src/c.swift", "let c = 2\n")           // staged then modified again
            try WS.write(info.path + "/.gitignore", "build/\n")
            try WS.git(info.path, "add", ".gitignore")
            try WS.write(info.path + "/build/out.o", "junk\n")                // ignored: stays behind

            // .gitignore is outside the claims: first a failure, with nothing changed.
            let before = try WS.snapshot(repo: repo)
            var r = try WS.sandboxd(["gate", "--repo", repo, "--worker", "w1"], stateDir: state)
            #expect(r.status == 1)
            #expect(r.stdout.contains("unclaimed-path") && r.stdout.contains(".gitignore"), "\(r.stdout)")
            #expect(r.stdout.contains("nothing in the central repository was changed"))
            #expect(try WS.snapshot(repo: repo) == before)
            try LockStore(repo: repo).acquire(worker: "w1", patterns: [".gitignore"])

            r = try WS.sandboxd(["gate", "--repo", repo, "--worker", "w1", "--run", "run-42", "--json"], stateDir: state)
            #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
            let report = try #require(try WS.json(r.stdout) as? [String: Any])
            #expect(report["passed"] as? Bool == true)
            #expect(report["committedUncommitted"] as? Bool == true)
            let result = try #require(report["result"] as? String)
            #expect(try WS.git(repo, "rev-parse", "refs/heads/sandboxd/w1") == result)
            #expect((report["objectsImported"] as? Int ?? 0) > 0)
            // The result: the worker's commit, then the gate's commit of the rest.
            #expect(try WS.git(repo, "rev-parse", result + "^") == workerCommit)
            #expect(try WS.git(repo, "rev-parse", result + "~2") == base)
            let message = try WS.git(repo, "log", "-1", "--format=%B", result)
            #expect(message.contains("w1") && message.contains("run-42"), "\(message)")
            #expect(try WS.git(repo, "log", "-1", "--format=%an", result) == "w1")
            #expect(try WS.git(repo, "show", result + ":src/a.swift") == "let a = 100")
            #expect(try WS.git(repo, "show", result + ":src/c.swift") == "let c = 2")
            #expect(try WS.git(repo, "show", result + ":Tests/BarTests.swift") == "// new")
            let files = try WS.git(repo, "ls-tree", "-r", "--name-only", result).split(separator: "\n").map(String.init)
            #expect(!files.contains("src/b.swift"))
            #expect(!files.contains("build/out.o"))
            try WS.git(repo, "fsck", "--no-dangling")
            // The worker's view follows: clean, on the gate's commit.
            #expect(try WS.git(info.path, "rev-parse", "HEAD") == result)
            #expect(try WS.git(info.path, "status", "--porcelain").isEmpty)
            #expect(try Workspace.lookup(repo: repo, worker: "w1", stateDir: state)?.passed == result)

            // A second round is compared with what passed, not the original base.
            try WS.write(info.path + "/src/a.swift", "let a = 101\n")
            try WS.git(info.path, "commit", "-qam", "round two")
            r = try WS.sandboxd(["gate", "--repo", repo, "--worker", "w1", "--json"], stateDir: state)
            #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
            let second = try #require(try WS.json(r.stdout) as? [String: Any])
            #expect(second["base"] as? String == result)
            #expect(second["commitsChecked"] as? Int == 1)
            #expect(second["committedUncommitted"] as? Bool == false)
            #expect(try WS.git(repo, "rev-parse", "sandboxd/w1") == (try WS.git(info.path, "rev-parse", "HEAD")))
            // Nothing new: still a pass, nothing moves.
            r = try WS.sandboxd(["gate", "--repo", repo, "--worker", "w1"], stateDir: state)
            #expect(r.status == 0)
            #expect(r.stdout.contains("no changes"), "\(r.stdout)")
        }
    }

    @Test("a report lists every violation, in text and JSON")
    func reportLists() throws {
        let o = try Self.gate(claims: ["src/**"]) { w in
            try WS.write(w.path + "/.github/workflows/ci.yml", "x\n")
            try WS.write(w.path + "/Tests/FooTests.swift", "x\n")
            try WS.write(w.path + "/README.md", "x\n")
        }
        #expect(o.status == 1)
        for (rule, path) in [("forbidden-path", ".github/workflows/ci.yml"), ("test-modified", "Tests/FooTests.swift"),
                             ("unclaimed-path", "README.md"), ("unclaimed-path", ".github/workflows/ci.yml"),
                             ("unclaimed-path", "Tests/FooTests.swift")] {
            #expect(o.has(rule, path), "\(rule) \(path) missing from \(o.violations)")
        }
        #expect(o.violations.count == 5)
        #expect(o.unchanged)
    }

    @Test("GateRules come from Profile.Gate")
    func rulesFromProfile() {
        var g = Profile.Gate()
        g.maxLines = 7
        g.forbidden = ["secret/**"]
        let rules = GateRules(g)
        #expect(rules.maxLines == 7)
        #expect(rules.maxBytes == g.maxBytes)
        #expect(rules.forbidden == ["secret/**"])
        #expect(rules.tests == g.tests)
    }
}
