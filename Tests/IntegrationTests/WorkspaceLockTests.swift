import Foundation
import Testing

@testable import SandboxExt

/// Path locks through the built `sandboxd lock` binary: races, leases, sharing through a remote.
@Suite("Workspace locks", .serialized)
struct WorkspaceLockTests {
    /// Worker i of 16 claims patterns that overlap those of the other workers of its group (i % 4)
    /// and of no other group.
    static func patterns(_ i: Int) -> [String] {
        let g = i % 4
        switch i / 4 {
        case 0: return ["g\(g)/**"]
        case 1: return ["g\(g)/src/*.swift", "own\(i).txt"]
        case 2: return ["g\(g)/*/x.swift"]
        default: return ["g\(g)/docs/**/*.md", "own\(i).txt"]
        }
    }

    static func worker(_ i: Int) -> String { String(format: "w%02d", i) }

    @Test("16 workers race for overlapping claims: one holder per path, losers exit 75 naming the winner, linear complete history")
    func sixteenWorkers() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: ["README.md": "x\n"])
            let env = WS.environment(stateDir: state)
            // Start all 16 before waiting for any.
            let launched = try (0..<16).map { i in
                try WS.launch(WS.binary, ["lock", "acquire", "--repo", repo, "--worker", Self.worker(i), "--lease", "600"]
                              + Self.patterns(i), env: env)
            }
            let results = launched.map(WS.finish)

            let store = try LockStore(repo: repo)
            let claims = try store.list()
            var winners: [Int] = []
            for (i, r) in results.enumerated() {
                let w = Self.worker(i)
                let mine = claims.filter { $0.worker == w }.map(\.pattern).sorted()
                switch r.status {
                case 0:
                    winners.append(i)
                    #expect(mine == Self.patterns(i).sorted(), "\(w) won but holds \(mine)")
                case 75:
                    #expect(mine.isEmpty, "\(w) lost but holds \(mine) (acquire is all or nothing)")
                    // It names a worker that holds an overlapping claim.
                    let wanted = try Self.patterns(i).map { try PathPattern($0) }
                    let blockers = try claims.filter { c in
                        let held = try PathPattern(c.pattern)
                        return wanted.contains { $0.overlaps(held) }
                    }
                    #expect(!blockers.isEmpty)
                    #expect(blockers.contains { r.stderr.contains("held by \($0.worker)") },
                            "\(w) lost without naming a holder: \(r.stderr)")
                    #expect(r.stderr.contains("lock conflict"))
                default:
                    Issue.record("\(w) exited \(r.status): \(r.stderr)")
                }
            }
            // Every group has exactly the winners whose claims do not overlap each other.
            #expect(winners.count >= 4)
            for a in claims {
                for b in claims where a.worker < b.worker {
                    #expect(!(try PathPattern(a.pattern).overlaps(try PathPattern(b.pattern))),
                            "\(a.worker):\(a.pattern) and \(b.worker):\(b.pattern) both held")
                }
            }
            // Concrete paths: never two holders.
            let paths = (0..<4).flatMap { g in
                ["g\(g)/a.txt", "g\(g)/src/a.swift", "g\(g)/src/x.swift", "g\(g)/k/x.swift", "g\(g)/docs/a/b.md", "g\(g)/docs/c.md"]
            } + (0..<16).map { "own\($0).txt" }
            for p in paths {
                let holders = Set(try claims.filter { try PathPattern($0.pattern).matches(p) }.map(\.worker))
                #expect(holders.count <= 1, "\(p) is held by \(holders.sorted())")
            }
            for g in 0..<4 {
                let holders = Set(try claims.filter { try PathPattern($0.pattern).matches("g\(g)/src/x.swift") }.map(\.worker))
                #expect(holders.count == 1, "g\(g)/src/x.swift should have exactly one holder, has \(holders.sorted())")
            }

            // The lock ref's history: linear, one commit per successful acquire, nothing lost on the way.
            let revs = try WS.git(repo, "rev-list", "--parents", "refs/sandboxd/locks").split(separator: "\n")
            #expect(revs.count == winners.count)
            for line in revs { #expect(line.split(separator: " ").count <= 2, "merge in the lock history: \(line)") }
            let subjects = try WS.git(repo, "log", "--format=%s", "refs/sandboxd/locks").split(separator: "\n").map(String.init)
            #expect(Set(subjects) == Set(winners.map { "acquire \(Self.worker($0)): " + Self.patterns($0).joined(separator: ", ") }))
            // Each commit keeps every lock file of its parent and adds exactly its worker's.
            let commits = try WS.git(repo, "rev-list", "--reverse", "refs/sandboxd/locks").split(separator: "\n").map(String.init)
            var previous = Set<String>()
            for c in commits {
                let files = Set(try WS.git(repo, "ls-tree", "--name-only", c + ":locks").split(separator: "\n").map(String.init))
                #expect(files.isSuperset(of: previous), "commit \(c) lost a claim")
                let added = files.subtracting(previous)
                #expect(Set(added.compactMap { $0.split(separator: "@").last.map(String.init) }).count == 1)
                previous = files
            }
            #expect(previous.count == claims.count)
        }
    }

    @Test("lock gc reclaims a SIGKILLed holder's claims after its lease, not before; a live holder keeps them")
    func gcAfterLease() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: ["README.md": "x\n"])
            // The holder: a process we kill with SIGKILL while it holds the claims.
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: "/bin/sleep")
            holder.arguments = ["600"]
            try holder.run()
            let pid = holder.processIdentifier
            let acquire = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "doomed", "--lease", "3",
                                           "--pid", String(pid), "src/**", "README.md"], stateDir: state)
            #expect(acquire.status == 0, "\(acquire.stderr)")
            // A live holder whose lease expires just as fast.
            let live = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "alive", "--lease", "1",
                                        "--pid", String(getpid()), "docs/**"], stateDir: state)
            #expect(live.status == 0, "\(live.stderr)")
            kill(pid, SIGKILL)
            holder.waitUntilExit()

            // Dead holder, lease still running: nothing is reclaimed, the claim still blocks others.
            let early = try WS.sandboxd(["lock", "gc", "--repo", repo], stateDir: state)
            #expect(early.status == 0)
            #expect(early.stdout.contains("nothing to release"), "\(early.stdout)")
            let blocked = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "next", "src/a.swift"], stateDir: state)
            #expect(blocked.status == 75)
            #expect(blocked.stderr.contains("doomed"))

            Thread.sleep(forTimeInterval: 3.5)
            let late = try WS.sandboxd(["lock", "gc", "--repo", repo], stateDir: state)
            #expect(late.status == 0, "\(late.stderr)")
            #expect(late.stdout.contains("released doomed: src/**"))
            #expect(late.stdout.contains("released doomed: README.md"))
            #expect(!late.stdout.contains("alive"), "a live holder lost its expired claim: \(late.stdout)")
            let claims = try LockStore(repo: repo).list()
            #expect(claims.map(\.worker) == ["alive"])
            let now = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "next", "src/a.swift"], stateDir: state)
            #expect(now.status == 0, "\(now.stderr)")
            // One commit for the gc, with what it released in the message.
            let log = try WS.git(repo, "log", "--format=%s", "refs/sandboxd/locks")
            #expect(log.split(separator: "\n").count == 4)
            #expect(log.contains("gc: release doomed:"))
        }
    }

    @Test("claims of another host are reclaimed on lease expiry alone")
    func gcOtherHost() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo"
            try WS.makeRepo(repo, files: ["README.md": "x\n"])
            let store = try LockStore(repo: repo)
            try store.acquire(worker: "remote1", patterns: ["a/**"], lease: 100, pid: getpid(), host: "some-other-host")
            try store.acquire(worker: "local1", patterns: ["b/**"], lease: 100, pid: getpid())
            let t = Int64(Date().timeIntervalSince1970)
            #expect(try store.gc(now: t + 50).isEmpty)
            let released = try store.gc(now: t + 200)
            #expect(released.map(\.worker) == ["remote1"])
            #expect(try store.list().map(\.worker) == ["local1"])
        }
    }

    @Test("acquire, release, list, wait")
    func basics() throws {
        try withWorkspaceTemp { tmp in
            let repo = tmp + "/repo", state = tmp + "/state"
            try WS.makeRepo(repo, files: ["README.md": "x\n"])
            var r = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "w1", "Sources/Auth/**", "*.md"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            // The same worker may re-acquire (lease renewal) and overlap itself.
            r = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "w1", "Sources/Auth/Login.swift"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            r = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "w2", "Sources/**", "docs/**"], stateDir: state)
            #expect(r.status == 75)
            #expect(r.stderr.contains("held by w1"))
            #expect(r.stderr.contains("Sources/Auth/**"), "the holder's patterns are listed: \(r.stderr)")
            #expect(try LockStore(repo: repo).list().allSatisfy { $0.worker == "w1" }, "all or nothing")

            r = try WS.sandboxd(["lock", "list", "--repo", repo, "--json"], stateDir: state)
            let obj = try #require(try WS.json(r.stdout) as? [String: Any])
            let locks = try #require(obj["locks"] as? [[String: Any]])
            #expect(Set(locks.compactMap { $0["pattern"] as? String }) == ["Sources/Auth/**", "*.md", "Sources/Auth/Login.swift"])
            #expect(locks.allSatisfy { ($0["file"] as? String)?.hasPrefix("locks/") == true })

            // A waiting acquire succeeds once the holder releases.
            let waiting = try WS.launch(WS.binary, ["lock", "acquire", "--repo", repo, "--worker", "w2", "--wait", "20", "Sources/**"],
                                        env: WS.environment(stateDir: state))
            Thread.sleep(forTimeInterval: 0.7)
            r = try WS.sandboxd(["lock", "release", "--repo", repo, "--worker", "w1", "Sources/Auth/**", "Sources/Auth/Login.swift"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            let waited = WS.finish(waiting)
            #expect(waited.status == 0, "\(waited.stderr)")
            // --wait gives up at the deadline with 75.
            let start = Date()
            r = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "w3", "--wait", "1", "Sources/x"], stateDir: state)
            #expect(r.status == 75)
            #expect(Date().timeIntervalSince(start) >= 0.9)
            // Release everything of a worker.
            r = try WS.sandboxd(["lock", "release", "--repo", repo, "--worker", "w1"], stateDir: state)
            #expect(r.status == 0)
            #expect(try LockStore(repo: repo).list().map(\.worker) == ["w2"])
        }
    }

    // MARK: sharing through a remote

    /// A bare remote and two clones of it (two "machines").
    static func machines(_ tmp: String) throws -> (remote: String, a: String, b: String) {
        let remote = tmp + "/remote.git", a = tmp + "/a", b = tmp + "/b"
        try WS.makeRepo(tmp + "/seed", files: ["README.md": "x\n", "src/a.swift": "a\n"])
        try WS.git(tmp, "clone", "-q", "--bare", tmp + "/seed", remote)
        try WS.git(tmp, "clone", "-q", remote, a)
        try WS.git(tmp, "clone", "-q", remote, b)
        return (remote, a, b)
    }

    @Test("two clones share locks through a bare remote")
    func remoteSharing() throws {
        try withWorkspaceTemp { tmp in
            let (remote, a, b) = try Self.machines(tmp)
            let state = tmp + "/state"
            var r = try WS.sandboxd(["lock", "acquire", "--repo", a, "--remote", "origin", "--worker", "alice", "src/**"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            // The other machine sees it through the remote.
            r = try WS.sandboxd(["lock", "acquire", "--repo", b, "--remote", "origin", "--worker", "bob", "src/a.swift"], stateDir: state)
            #expect(r.status == 75)
            #expect(r.stderr.contains("held by alice"))
            r = try WS.sandboxd(["lock", "acquire", "--repo", b, "--remote", "origin", "--worker", "bob", "docs/**"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            r = try WS.sandboxd(["lock", "list", "--repo", a, "--remote", "origin"], stateDir: state)
            #expect(r.stdout.contains("alice") && r.stdout.contains("bob"), "\(r.stdout)")

            // Both machines at once: every acquire lands, in one linear history on the remote.
            let env = WS.environment(stateDir: state)
            let racers = try (0..<8).map { i in
                try WS.launch(WS.binary, ["lock", "acquire", "--repo", i % 2 == 0 ? a : b, "--remote", "origin",
                                          "--worker", "m\(i)", "area\(i)/**"], env: env)
            }
            for (i, res) in racers.map(WS.finish).enumerated() {
                #expect(res.status == 0, "m\(i): \(res.stderr)")
            }
            let revs = try WS.git(remote, "rev-list", "--parents", "refs/sandboxd/locks").split(separator: "\n")
            #expect(revs.count == 10)
            for line in revs { #expect(line.split(separator: " ").count <= 2) }
            let held = try WS.git(remote, "ls-tree", "--name-only", "refs/sandboxd/locks:locks").split(separator: "\n")
            #expect(held.count == 10)

            // A release on one machine frees the path for the other.
            r = try WS.sandboxd(["lock", "release", "--repo", a, "--remote", "origin", "--worker", "alice"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            r = try WS.sandboxd(["lock", "acquire", "--repo", b, "--remote", "origin", "--worker", "bob", "src/a.swift"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            // Each clone's local lock ref mirrors what it last saw of the remote.
            let remoteTip = try WS.git(remote, "rev-parse", "refs/sandboxd/locks")
            #expect(try WS.git(b, "rev-parse", "refs/sandboxd/locks") == remoteTip)
            #expect(try WS.git(remote, "fsck", "--no-dangling").isEmpty)
        }
    }

    static let gitDaemonAvailable = FileManager.default.isExecutableFile(atPath: "/usr/lib/git-core/git-daemon")

    @Test("sharing through a smart (git://) remote: the server's compare-and-swap decides races",
          .enabled(if: gitDaemonAvailable))
    func smartRemote() throws {
        try withWorkspaceTemp { tmp in
            let (remote, a, b) = try Self.machines(tmp)
            try WS.git(remote, "config", "daemon.receivepack", "true")
            let state = tmp + "/state"
            // A git daemon on a free port: git-daemon itself (not the `git daemon` wrapper, which would
            // outlive a SIGKILL), with no pipes a stray child could hold open.
            var daemon: Process?
            var port = 0
            for attempt in 0..<10 {
                port = 20000 + Int(getpid() % 20000) + attempt * 7
                let d = Process()
                d.executableURL = URL(fileURLWithPath: "/usr/lib/git-core/git-daemon")
                d.arguments = ["--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1",
                               "--port=\(port)", "--base-path=\(tmp)", tmp]
                d.environment = WS.environment()
                d.standardInput = FileHandle.nullDevice
                d.standardOutput = FileHandle.nullDevice
                d.standardError = FileHandle.nullDevice
                try d.run()
                Thread.sleep(forTimeInterval: 0.5)
                if d.isRunning {
                    daemon = d
                    break
                }
                d.waitUntilExit()
            }
            let d = try #require(daemon, "git daemon did not start")
            defer {
                kill(d.processIdentifier, SIGKILL)
                d.waitUntilExit()
            }
            let url = "git://127.0.0.1:\(port)/remote.git"
            try WS.git(a, "remote", "add", "smart", url)
            try WS.git(b, "remote", "add", "smart", url)
            var r = try WS.sandboxd(["lock", "acquire", "--repo", a, "--remote", "smart", "--worker", "alice", "src/**"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            r = try WS.sandboxd(["lock", "acquire", "--repo", b, "--remote", "smart", "--worker", "bob", "src/x"], stateDir: state)
            #expect(r.status == 75, "\(r.stderr)")
            #expect(r.stderr.contains("held by alice"))
            let env = WS.environment(stateDir: state)
            let racers = try (0..<6).map { i in
                try WS.launch(WS.binary, ["lock", "acquire", "--repo", i % 2 == 0 ? a : b, "--remote", "smart",
                                          "--worker", "m\(i)", "area\(i)/**"], env: env)
            }
            for (i, res) in racers.map(WS.finish).enumerated() {
                #expect(res.status == 0, "m\(i): \(res.stderr)")
            }
            let revs = try WS.git(remote, "rev-list", "--parents", "refs/sandboxd/locks").split(separator: "\n")
            #expect(revs.count == 7)
            for line in revs { #expect(line.split(separator: " ").count <= 2) }
            #expect(try WS.git(remote, "ls-tree", "--name-only", "refs/sandboxd/locks:locks").split(separator: "\n").count == 7)
        }
    }
}
