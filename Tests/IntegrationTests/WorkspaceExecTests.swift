// `sandboxd exec --repo R --worker W`: real sandboxes running git in a worker's worktree.
import Foundation
import Testing

@testable import SandboxExt

@Suite("Workspace exec", .serialized)
struct WorkspaceExecTests {
    /// The launcher binary, next to sandboxd-ext.
    static let launcher = (WS.binary as NSString).deletingLastPathComponent + "/sandboxd"

    func exec(_ args: [String], stateDir: String) throws -> WSResult {
        try WS.run(Self.launcher, ["exec", "--no-tty"] + args, env: WS.environment(stateDir: stateDir))
    }

    @Test func gitWorksInsideAndTheCentralRepositoryCannotBeTouched() throws {
        try withWorkspaceTemp { dir in
            let repo = dir + "/repo", state = dir + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            // Provisioning registers the worktree in the central repository (host side, by
            // design); from then on nothing the worker does may change it.
            let add = try WS.sandboxd(["worktree", "add", "w1", "--repo", repo], stateDir: state)
            #expect(add.status == 0, "\(add.stderr)")
            let before = try WS.snapshot(repo: repo)
            let objects = repo + "/.git/objects"
            // Each line prints OK or DENIED; the worker also commits a forbidden path, so the
            // gate rejects the work and the central repository must stay byte-for-byte the same.
            let script = """
            set -u
            try() { if sh -c "$2" >/dev/null 2>&1; then echo "$1 OK"; else echo "$1 DENIED"; fi; }
            git config user.name w; git config user.email w@example.invalid
            echo 'let c = 3' > src/c.swift
            try commit "git add -A && git commit -qm 'add c'"
            try log "git log --oneline | grep -q 'add c'"
            try branch "git switch -qc topic && git switch -q sandboxd/w1"
            try central-hook "echo evil > \(repo)/.git/hooks/post-checkout"
            try central-config "echo '[core] fsmonitor = evil' >> \(repo)/.git/config"
            try central-object "rm -f \(objects)/$(ls \(objects) | grep -v -e info -e pack | head -1)/*"
            try central-main "git --git-dir=\(repo)/.git update-ref refs/heads/main HEAD"
            mkdir -p .github/workflows && echo 'on: evil' > .github/workflows/ci.yml
            git add -A && git commit -qm 'touch CI'
            """
            let r = try exec(["--repo", repo, "--worker", "w1", "--", "sh", "-c", script], stateDir: state)
            for line in ["commit OK", "log OK", "branch OK", "central-object DENIED", "central-main DENIED"] {
                #expect(r.stdout.contains(line), "\(line) in:\n\(r.stdout)\n\(r.stderr)")
            }
            // The central hooks and config are not mounted at all: a write there lands in the
            // sandbox's private /tmp (or fails) and never reaches the host, which the snapshot proves.
            #expect(!(WS.read(repo + "/.git/config") ?? "").contains("evil"))
            #expect(!FileManager.default.fileExists(atPath: repo + "/.git/hooks/post-checkout"))
            #expect(r.stderr.contains("gate: REJECTED"))
            #expect(r.status == 1, "the command succeeded but the gate rejected the work: exit 1 (\(r.stderr))")
            let after = try WS.snapshot(repo: repo)
            #expect(WS.differences(before, after).isEmpty, "changed: \(WS.differences(before, after))")
        }
    }

    @Test func aCleanChangePassesTheGateAndComesBack() throws {
        try withWorkspaceTemp { dir in
            let repo = dir + "/repo", state = dir + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let report = dir + "/report.json"
            let r = try exec(["--repo", repo, "--worker", "w2", "--claim", "src/**", "--json-report", report, "--",
                              "sh", "-c", "echo 'let d = 4' > src/d.swift"], stateDir: state)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("gate: passed"))
            let tree = try WS.git(repo, "ls-tree", "-r", "--name-only", "refs/heads/sandboxd/w2")
            #expect(tree.split(separator: "\n").contains("src/d.swift"))
            let json = try #require(try WS.json(WS.read(report) ?? "") as? [String: Any])
            #expect((json["gate"] as? [String: Any]) != nil, "the report carries the gate's verdict")
            // The claim was released after the gate.
            let locks = try WS.sandboxd(["lock", "list", "--repo", repo, "--json"], stateDir: state)
            #expect(!locks.stdout.contains("w2"), "\(locks.stdout)")
        }
    }

    @Test func aConflictingClaimStopsTheCommandWithExit75() throws {
        try withWorkspaceTemp { dir in
            let repo = dir + "/repo", state = dir + "/state"
            try WS.makeRepo(repo, files: WS.standardFiles)
            let held = try WS.sandboxd(["lock", "acquire", "--repo", repo, "--worker", "holder", "src/**"], stateDir: state)
            #expect(held.status == 0, "\(held.stderr)")
            let r = try exec(["--repo", repo, "--worker", "late", "--claim", "src/a.swift", "--", "touch", "ran"], stateDir: state)
            #expect(r.status == 75, "\(r.stderr)")
            #expect(r.stderr.contains("holder"), "the message names the holder: \(r.stderr)")
            // The command would have created `ran` in the worktree: it never ran.
            let files = FileManager.default.enumerator(atPath: state)?.allObjects as? [String] ?? []
            #expect(!files.contains { $0.hasSuffix("/ran") }, "the command must not run without its claims")
        }
    }

    @Test func aNamedSandboxOnAWorktreeKeepsItsWorkUntilTheGatePasses() throws {
        try withWorkspaceTemp { dir in
            let repo = dir + "/repo", state = dir + "/state"
            // A named sandbox's overlay layers are named by path: its root must traverse to them.
            chmod(dir, 0o711)
            try WS.makeRepo(repo, files: WS.standardFiles)
            let env = WS.environment(stateDir: state)
            let create = try WS.run(Self.launcher, ["create", "s1", "--repo", repo, "--worker", "named"], env: env)
            #expect(create.status == 0, "\(create.stderr)")
            let commit = "echo 'let e = 5' > src/e.swift && git add -A && git -c user.name=n -c user.email=n@example.invalid commit -qm e && git log --oneline | wc -l"
            let r = try WS.run(Self.launcher, ["exec", "--no-tty", "s1", "--", "sh", "-c", commit], env: env)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "the commit is on top of the base: \(r.stdout)")
            // A second process resumes and finds the commit.
            let again = try WS.run(Self.launcher, ["exec", "--no-tty", "s1", "--", "git", "log", "--format=%s", "-1"], env: env)
            #expect(again.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "e")
            let refused = try WS.run(Self.launcher, ["rm", "s1"], env: env)
            #expect(refused.status != 0 && refused.stderr.contains("not passed the gate"), "\(refused.stderr)")
            let gate = try WS.sandboxd(["gate", "--repo", repo, "--worker", "named"], stateDir: state)
            #expect(gate.status == 0, "\(gate.stdout)\(gate.stderr)")
            let rm = try WS.run(Self.launcher, ["rm", "s1"], env: env)
            #expect(rm.status == 0, "\(rm.stderr)")
        }
    }
}
