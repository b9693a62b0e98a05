// Named sandboxes on a worker's worktree: checkpoints, rewind, export and import carry the
// worker's git state (commits, branch tip, HEAD, index), checked with the git CLI.
import Foundation
import Testing

@testable import SandboxExt

@Suite("Persistence: worker sandboxes", .serialized)
struct PersistenceWorkerTests {
    static let launcher = (WS.binary as NSString).deletingLastPathComponent + "/sandboxd"

    /// A temporary directory with a central repository, a state directory and `sandboxd` bound to them.
    struct Fixture {
        let dir: String
        var repo: String { dir + "/repo" }
        var state: String { dir + "/state" }

        func sandboxd(_ args: String..., state: String? = nil) throws -> WSResult {
            try WS.run(PersistenceWorkerTests.launcher, args, env: WS.environment(stateDir: state ?? self.state))
        }

        /// `sandboxd exec NAME -- sh -c SCRIPT`, which must succeed; its output trimmed.
        @discardableResult
        func sh(_ name: String, _ script: String, state: String? = nil) throws -> String {
            let r = try sandboxd("exec", "--no-tty", name, "--", "sh", "-c", script, state: state)
            guard r.status == 0 else { throw SandboxError("exec \(name) \(script): \(r.status) \(r.stderr)") }
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// The worker's private git directory (git CLI on the host, for checks only).
        func gitDir(_ worker: String, state: String? = nil) throws -> String {
            let root = (state ?? self.state) + "/worktrees"
            let id = try #require(try FileManager.default.contentsOfDirectory(atPath: root).first)
            return root + "/" + id + "/" + worker + ".git"
        }

        func git(_ worker: String, _ args: String..., state: String? = nil) throws -> String {
            try WS.gitArgs(try gitDir(worker, state: state), args)
        }
    }

    static func withFixture(_ body: (Fixture) throws -> Void) throws {
        try withWorkspaceTemp { dir in
            // The sandbox's root must traverse to its overlay layers.
            chmod(dir, 0o711)
            let f = Fixture(dir: dir)
            try WS.makeRepo(f.repo, files: WS.standardFiles)
            try body(f)
        }
    }

    static let commit = "git add -A && git commit -qm"

    @Test func rewindRestoresTheWorkersCommitsBranchHeadAndIndex() throws {
        try Self.withFixture { f in
            var r = try f.sandboxd("create", "s", "--repo", f.repo, "--worker", "w")
            try #require(r.status == 0, "\(r.stderr)")
            // The manifest records the commit the worktree was made from.
            let inspect = try f.sandboxd("inspect", "s", "--json")
            let manifest = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
            let base = (manifest?["repository"] as? [String: Any])?["base"] as? String
            #expect(base == (try WS.git(f.repo, "rev-parse", "HEAD")), "\(inspect.stdout)")
            try f.sh("s", "echo one > src/one.swift && \(Self.commit) one && echo staged > staged.txt && git add staged.txt")
            let tip = try f.git("w", "rev-parse", "refs/heads/sandboxd/w")
            let index = try f.git("w", "ls-files", "--stage")
            let branches = try f.git("w", "for-each-ref", "--format=%(refname)", "refs/heads")
            r = try f.sandboxd("checkpoint", "s", "--label", "one")
            try #require(r.status == 0, "\(r.stderr)")

            // Later work: another commit, a changed index, a detached HEAD, a new branch.
            try f.sh("s", "git reset -q && \(Self.commit) two && echo three > three.txt && \(Self.commit) three && git branch sbx-extra && git checkout -q --detach HEAD~1")
            #expect(try f.git("w", "rev-parse", "refs/heads/sandboxd/w") != tip)

            r = try f.sandboxd("rewind", "s", "one")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try f.git("w", "rev-parse", "refs/heads/sandboxd/w") == tip)
            #expect(try f.git("w", "symbolic-ref", "HEAD") == "refs/heads/sandboxd/w")
            #expect(try f.git("w", "ls-files", "--stage") == index)
            let refs = try f.git("w", "for-each-ref", "--format=%(refname)", "refs/heads")
            #expect(refs == branches && !refs.contains("sbx-extra"), "the branch made after the checkpoint is gone: \(refs)")
            // Inside, git sees exactly the checkpoint: two commits, the staged file staged, nothing else.
            let inside = try f.sh("s", "git log --format=%s; git status --short; ls")
            #expect(inside.split(separator: "\n").map(String.init)
                        == ["one", "initial", "A  staged.txt", "README.md", "Tests", "docs", "src", "staged.txt"], "\(inside)")
        }
    }

    @Test func rewindBehindTheGatesLastPassedCommitIsRefused() throws {
        try Self.withFixture { f in
            var r = try f.sandboxd("create", "s", "--repo", f.repo, "--worker", "w")
            try #require(r.status == 0, "\(r.stderr)")
            try f.sh("s", "echo one > src/one.swift && \(Self.commit) one")
            r = try f.sandboxd("checkpoint", "s", "--label", "before-gate")
            try #require(r.status == 0, "\(r.stderr)")
            try f.sh("s", "echo two > src/two.swift && \(Self.commit) two")
            let gate = try WS.sandboxd(["gate", "--repo", f.repo, "--worker", "w"], stateDir: f.state)
            try #require(gate.status == 0, "\(gate.stdout)\(gate.stderr)")
            let passed = try WS.git(f.repo, "rev-parse", "refs/heads/sandboxd/w")
            let workerTip = try f.git("w", "rev-parse", "HEAD")

            r = try f.sandboxd("rewind", "s", "before-gate")
            #expect(r.status == 125)
            #expect(r.stderr.contains("passed the gate") && r.stderr.contains("take a new checkpoint"), "\(r.stderr)")
            // Nothing moved: the worker, the central branch, the metadata's passed commit.
            #expect(try f.git("w", "rev-parse", "HEAD") == workerTip)
            #expect(try WS.git(f.repo, "rev-parse", "refs/heads/sandboxd/w") == passed)
            let meta = try #require(WS.read(try f.gitDir("w").replacingOccurrences(of: ".git", with: ".meta")))
            #expect(meta.contains("passed \(passed)"))
            #expect(try f.sh("s", "git log --format=%s -1") == "two")

            // A checkpoint taken after the gate rewinds.
            r = try f.sandboxd("checkpoint", "s", "--label", "after-gate")
            try #require(r.status == 0, "\(r.stderr)")
            try f.sh("s", "echo three > src/three.swift && \(Self.commit) three")
            r = try f.sandboxd("rewind", "s", "after-gate")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try f.git("w", "rev-parse", "HEAD") == passed)
        }
    }

    @Test func checkpointsKeepTheArchiveCompactAndComeBackAsFilesOfTheirOwn() throws {
        try Self.withFixture { f in
            var r = try f.sandboxd("create", "c")
            try #require(r.status == 0, "\(r.stderr)")
            try f.sh("c", "head -c 3000000 /dev/urandom > big.bin")
            for _ in 0..<2 { try #require(try f.sandboxd("checkpoint", "c").status == 0) }
            let archive = f.dir + "/c.sbx"
            r = try f.sandboxd("export", "c", "-o", archive)
            try #require(r.status == 0, "\(r.stderr)")
            let size = try #require(try FileManager.default.attributesOfItem(atPath: archive)[.size] as? Int)
            #expect(size < 3_300_000, "two checkpoints of a 3 MB file made a \(size)-byte archive")

            let other = f.dir + "/other"
            r = try f.sandboxd("import", archive, state: other)
            try #require(r.status == 0, "\(r.stderr)")
            let copies = ["workdir", "checkpoints/1/workdir", "checkpoints/2/workdir"].map { other + "/sandboxes/c/" + $0 + "/big.bin" }
            for path in copies {
                var st = stat()
                #expect(lstat(path, &st) == 0 && st.st_nlink == 1 && st.st_size == 3_000_000, "\(path)")
            }
            // A write in place after the import leaves the checkpoints alone.
            try f.sh("c", "printf x | dd of=big.bin bs=1 seek=0 conv=notrunc status=none", state: other)
            r = try f.sandboxd("rewind", "c", "2", state: other)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(Persist.hostFileHash(copies[0]) == Persist.hostFileHash(copies[2]))
            #expect(Persist.hostFileHash(copies[0]) == Persist.hostFileHash(f.state + "/sandboxes/c/workdir/big.bin"))
        }
    }

    @Test func exportImportBringsBackCommitsCheckpointsAndAFreshMachineNeedsTheRepository() throws {
        try Self.withFixture { f in
            var r = try f.sandboxd("create", "s", "--repo", f.repo, "--worker", "w")
            try #require(r.status == 0, "\(r.stderr)")
            try f.sh("s", "echo one > src/one.swift && \(Self.commit) one")
            r = try f.sandboxd("checkpoint", "s", "--label", "one")
            try #require(r.status == 0, "\(r.stderr)")
            try f.sh("s", "echo two > src/two.swift && \(Self.commit) two && echo wip > wip.txt && git add wip.txt")
            let tip = try f.git("w", "rev-parse", "HEAD")
            let archive = f.dir + "/s.sbx"
            r = try f.sandboxd("export", "s", "-o", archive)
            try #require(r.status == 0, "\(r.stderr)")

            // The sandbox, its worktree and its branch are gone.
            r = try f.sandboxd("rm", "s", "--force")
            try #require(r.status == 0, "\(r.stderr)")
            r = try f.sandboxd("worktree", "rm", "w", "--repo", f.repo, "--force")
            try #require(r.status == 0, "\(r.stderr)")
            #expect(try WS.git(f.repo, "branch", "--list", "sandboxd/*").isEmpty)

            // (a) Same machine, same repository: commits, index and checkpoints are back.
            r = try f.sandboxd("import", archive)
            try #require(r.status == 0, "\(r.stderr)")
            #expect(try f.sh("s", "git log --format=%s; git status --short") == "two\none\ninitial\nA  wip.txt")
            #expect(try f.git("w", "rev-parse", "refs/heads/sandboxd/w") == tip)
            let cps = try WS.json(try f.sandboxd("checkpoints", "s", "--json").stdout) as? [[String: Any]] ?? []
            #expect(cps.map { $0["label"] as? String } == ["one"])
            r = try f.sandboxd("rewind", "s", "one")
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try f.sh("s", "git log --format=%s; git status --short") == "one\ninitial")

            // (b) A fresh machine where the repository is not at the recorded path: refused, naming
            // --repo, with nothing written; with --repo a clone, the worker's work is attached to it.
            let fresh = f.dir + "/fresh"
            let moved = f.dir + "/elsewhere"
            let clone = try WS.run(WS.gitPath, ["clone", "-q", f.repo, moved], env: WS.environment())
            try #require(clone.status == 0, "\(clone.stderr)")
            try FileManager.default.moveItem(atPath: f.repo, toPath: f.dir + "/repo-away")
            defer { try? FileManager.default.moveItem(atPath: f.dir + "/repo-away", toPath: f.repo) }
            r = try f.sandboxd("import", archive, state: fresh)
            #expect(r.status == 125)
            #expect(r.stderr.contains("--repo PATH"), "\(r.stderr)")
            let left = (try? FileManager.default.contentsOfDirectory(atPath: fresh + "/sandboxes")) ?? []
            #expect(left.isEmpty, "\(left)")
            let worktrees = (try? FileManager.default.contentsOfDirectory(atPath: fresh + "/worktrees")) ?? []
            #expect(worktrees.allSatisfy { (try? FileManager.default.contentsOfDirectory(atPath: fresh + "/worktrees/" + $0))?.isEmpty ?? true },
                    "\(worktrees)")
            r = try f.sandboxd("import", archive, "--repo", moved, state: fresh)
            try #require(r.status == 0, "\(r.stderr)")
            #expect(try f.sh("s", "git log --format=%s; git status --short", state: fresh) == "two\none\ninitial\nA  wip.txt")
            r = try f.sandboxd("rewind", "s", "one", state: fresh)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try f.sh("s", "git log --format=%s", state: fresh) == "one\ninitial")
        }
    }
}
