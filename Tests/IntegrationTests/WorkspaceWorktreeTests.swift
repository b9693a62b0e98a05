import Foundation
import Testing

@testable import SandboxExt

/// Worker worktrees: layout, isolation of the central repository, removal that never loses work.
@Suite("Workspace worktrees")
struct WorkspaceWorktreeTests {
    @Test("provision: worktree in the state directory on sandboxd/NAME, private git directory, reuse")
    func provision() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let head = try WS.git(repo, "rev-parse", "HEAD")
            let info = try Workspace.provision(repo: repo, worker: "w1", stateDir: state)

            #expect(info.path == state + "/worktrees/\(info.repoID)/w1")
            #expect(!info.path.hasPrefix(repo))
            #expect(info.gitDir == info.path + ".git")
            #expect(info.commonDir == info.gitDir)
            #expect(info.objectsDir == info.gitDir + "/objects")
            #expect(info.base == head)
            #expect(info.branch == "refs/heads/sandboxd/w1")
            #expect(info.centralGitDir == repo + "/.git")
            #expect(info.registrationDir == repo + "/.git/worktrees/w1")
            #expect(WS.read(info.path + "/.git") == "gitdir: \(info.gitDir)\n")
            #expect(WS.read(info.objectsDir + "/info/alternates") == repo + "/.git/objects\n")
            #expect(WS.read(info.metadataPath)?.contains("base \(head)") == true)
            // The central repository has the branch and git's registration of the worktree.
            #expect(try WS.git(repo, "rev-parse", "sandboxd/w1") == head)
            #expect(try WS.git(repo, "worktree", "list", "--porcelain").contains("worktree \(info.path)"))
            // Plain git in the worktree: clean, on its branch, other branches visible.
            #expect(try WS.git(info.path, "status", "--porcelain").isEmpty)
            #expect(try WS.git(info.path, "rev-parse", "--abbrev-ref", "HEAD") == "sandboxd/w1")
            #expect(try WS.git(info.path, "rev-parse", "main") == head)
            #expect(try WS.git(info.path, "rev-parse", "--git-dir") == info.gitDir)
            #expect(WS.read(info.path + "/src/a.swift") == "let a = 1\n")
            // What to mount: central objects read-only, the worker's git directory and work tree writable.
            let mounts = info.mounts
            #expect(mounts.first { $0.source == repo + "/.git/objects" }?.readOnly == true)
            #expect(mounts.first { $0.source == info.gitDir }?.readOnly == false)
            #expect(mounts.first { $0.source == info.path }?.readOnly == false)
            #expect(!mounts.contains { $0.source == repo + "/.git" || $0.source == info.registrationDir })

            // Reuse: same worktree, work kept.
            try WS.write(info.path + "/new.txt", "keep me\n")
            let again = try Workspace.provision(repo: repo, worker: "w1", stateDir: state)
            #expect(again == info)
            #expect(WS.read(info.path + "/new.txt") == "keep me\n")
            // An explicit, different base is refused rather than silently ignored.
            try WS.write(repo + "/README.md", "# changed\n")
            try WS.git(repo, "commit", "-qam", "second")
            #expect(throws: SandboxError.self) {
                try Workspace.provision(repo: repo, worker: "w1", base: "HEAD", stateDir: state)
            }
            // Another worker from an explicit base.
            let w2 = try Workspace.provision(repo: repo, worker: "w2", base: head, stateDir: state)
            #expect(w2.base == head)
            #expect(WS.read(w2.path + "/README.md") == "# Project\n")
            let listed = try Workspace.list(repo: repo, stateDir: state).map(\.worker).sorted()
            #expect(listed == ["w1", "w2"])
            // From a subdirectory of the repository, or from a linked worktree: the same central repository.
            #expect(try Workspace.lookup(repo: repo + "/src", worker: "w1", stateDir: state) == info)
            // From the worker's worktree: its central repository (from the metadata, not from the worker's files).
            #expect(try Workspace.repoID(repo: info.path) == info.repoID)
            #expect(try Workspace.lookup(repo: info.path + "/src", worker: "w1", stateDir: state) == info)
            #expect(try LockStore(repo: info.path).gitDir == repo + "/.git")
            #expect(throws: SandboxError.self) { try Workspace.provision(repo: repo, worker: "../evil", stateDir: state) }
        }
    }

    @Test("the worker's plain git never writes into the central repository; central gc and fsck still work")
    func isolation() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let info = try Workspace.provision(repo: repo, worker: "w1", stateDir: state)
            let before = try WS.snapshot(repo: repo)

            let wt = info.path
            try WS.write(wt + "/src/a.swift", "let a = 42\n")
            try WS.write(wt + "/src/c.swift", "let c = 3\n")
            try WS.git(wt, "add", "-A")
            try WS.git(wt, "commit", "-qm", "worker commit")
            try WS.git(wt, "branch", "side")
            try WS.git(wt, "tag", "v-worker")
            try WS.git(wt, "config", "core.hooksPath", "/tmp/evil-hooks")
            try WS.write(wt + "/scratch.txt", "x\n")
            try WS.git(wt, "stash", "-u")
            try WS.git(wt, "stash", "pop")
            try WS.git(wt, "checkout", "-q", "-b", "experiment")
            try WS.git(wt, "checkout", "-q", "sandboxd/w1")
            try WS.git(wt, "gc", "-q")
            let workerCommit = try WS.git(wt, "rev-parse", "HEAD")

            let after = try WS.snapshot(repo: repo)
            #expect(before == after, "central repository changed: \(WS.differences(before, after))")
            // The worker's objects are in its own store only.
            let r = try WS.run(WS.gitPath, ["-C", repo, "cat-file", "-e", workerCommit], env: WS.environment())
            #expect(r.status != 0)
            #expect(try WS.git(wt, "cat-file", "-t", workerCommit) == "commit")
            // Central maintenance is unaffected by a worker holding unimported commits.
            try WS.git(repo, "gc", "-q")
            try WS.git(repo, "fsck", "--no-dangling")
            #expect(try WS.git(wt, "log", "--oneline", "-1").contains("worker commit"))
        }
    }

    static let canUnshareMounts: Bool = {
        guard getuid() == 0, let r = try? WS.run("/usr/bin/unshare", ["-m", "true"], env: WS.environment()) else { return false }
        return r.status == 0
    }()

    @Test("with the central .git mounted read-only, plain git in the worktree works and the gate imports the result",
          .enabled(if: canUnshareMounts))
    func readOnlyCentral() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let info = try Workspace.provision(repo: repo, worker: "w1", stateDir: state)
            let script = """
                set -e
                mount --bind '\(repo)/.git' '\(repo)/.git'
                mount -o remount,bind,ro '\(repo)/.git'
                if touch '\(repo)/.git/probe' 2>/dev/null; then echo 'central .git is writable'; exit 3; fi
                cd '\(info.path)'
                echo 'let a = 7' > src/a.swift
                echo 'new' > src/new.swift
                git add -A
                git commit -qm 'inside the sandbox'
                git status --porcelain
                git log --oneline main..HEAD
                """
            let r = try WS.run("/usr/bin/unshare", ["-m", "sh", "-c", script], env: WS.environment())
            #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
            #expect(r.stdout.contains("inside the sandbox"))
            let gate = try WS.sandboxd(["gate", "--repo", repo, "--worker", "w1"], stateDir: state)
            #expect(gate.status == 0, "\(gate.stdout)\(gate.stderr)")
            #expect(try WS.git(repo, "show", "sandboxd/w1:src/new.swift") == "new")
            try WS.git(repo, "fsck", "--no-dangling")
        }
    }

    @Test("rm and prune refuse to lose work that has not passed the gate")
    func removalKeepsWork() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let committed = try Workspace.provision(repo: repo, worker: "committed", stateDir: state)
            let dirty = try Workspace.provision(repo: repo, worker: "dirty", stateDir: state)
            let untracked = try Workspace.provision(repo: repo, worker: "untracked", stateDir: state)
            let idle = try Workspace.provision(repo: repo, worker: "idle", stateDir: state)
            let delivered = try Workspace.provision(repo: repo, worker: "delivered", stateDir: state)

            try WS.write(committed.path + "/src/a.swift", "changed\n")
            try WS.git(committed.path, "commit", "-qam", "unpassed commit")
            try WS.write(dirty.path + "/src/b.swift", "changed\n")
            try WS.write(untracked.path + "/src/new.swift", "new\n")
            try WS.write(delivered.path + "/docs/guide.md", "better guide\n")
            var r = try WS.sandboxd(["gate", "--repo", repo, "--worker", "delivered"], stateDir: state)
            #expect(r.status == 0, "\(r.stdout)\(r.stderr)")

            #expect(Workspace.status(committed).unpassedCommits == 1)
            #expect(Workspace.status(dirty).uncommitted == ["src/b.swift"])
            #expect(Workspace.status(untracked).uncommitted == ["src/new.swift"])
            #expect(!Workspace.status(idle).hasUnpassedWork)
            #expect(!Workspace.status(delivered).hasUnpassedWork)

            for w in [committed, dirty, untracked] {
                r = try WS.sandboxd(["worktree", "rm", w.worker, "--repo", repo], stateDir: state)
                #expect(r.status == 1, "rm \(w.worker): \(r.stdout)\(r.stderr)")
                #expect(r.stderr.contains("not passed by the gate"), "\(r.stderr)")
                #expect(r.stderr.contains("--force"))
                #expect(FileManager.default.fileExists(atPath: w.path))
            }
            // prune removes what holds nothing unpassed, keeps the rest and says so (exit 1).
            r = try WS.sandboxd(["worktree", "prune", "--repo", repo], stateDir: state)
            #expect(r.status == 1)
            #expect(r.stdout.contains("removed idle"))
            #expect(r.stdout.contains("removed delivered"))
            for w in ["committed", "dirty", "untracked"] { #expect(r.stderr.contains("kept \(w)"), "\(r.stderr)") }
            #expect(!FileManager.default.fileExists(atPath: idle.path))
            #expect(!FileManager.default.fileExists(atPath: idle.gitDir))
            #expect(FileManager.default.fileExists(atPath: committed.path))
            // The passed work stays on its branch; an idle worker's untouched branch goes.
            #expect(try WS.git(repo, "show", "sandboxd/delivered:docs/guide.md") == "better guide")
            let branches = try WS.git(repo, "branch", "--list", "sandboxd/*")
            #expect(!branches.contains("sandboxd/idle"))
            #expect(!(try WS.git(repo, "worktree", "list")).contains(idle.path))

            // --force discards, and says what.
            r = try WS.sandboxd(["worktree", "rm", "committed", "--repo", repo, "--force"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("discarded 1 commit"))
            #expect(!FileManager.default.fileExists(atPath: committed.path))
            r = try WS.sandboxd(["worktree", "list", "--repo", repo, "--json"], stateDir: state)
            let list = try #require(try WS.json(r.stdout) as? [[String: Any]])
            #expect(Set(list.compactMap { $0["worker"] as? String }) == ["dirty", "untracked"])
            r = try WS.sandboxd(["worktree", "prune", "--repo", repo, "--force"], stateDir: state)
            #expect(r.status == 0)
            #expect(try Workspace.list(repo: repo, stateDir: state).isEmpty)
            #expect(try WS.git(repo, "worktree", "list").split(separator: "\n").count == 1)
            try WS.git(repo, "fsck", "--no-dangling")
        }
    }

    @Test("a worker that holds a live lock is not pruned while it may still be running")
    func pruneSkipsLockHolders() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let info = try Workspace.provision(repo: repo, worker: "busy", stateDir: state)
            try LockStore(repo: repo).acquire(worker: "busy", patterns: ["src/**"])
            let result = try Workspace.prune(repo: repo, stateDir: state)
            #expect(result.removed.isEmpty)
            #expect(result.kept.first?.reason.contains("lock") == true)
            #expect(FileManager.default.fileExists(atPath: info.path))
        }
    }
}
