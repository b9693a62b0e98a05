import Foundation
import Glibc
import SandboxKit
import Testing

/// Named sandboxes end to end, through the real binaries: what one exec
/// leaves, the next (a separate process, no shared memory) finds; also after
/// export and import into a fresh state directory.
@Suite("Persistence: handoff", .serialized)
struct PersistenceHandoffTests {
    /// The first agent: installs a tool into the sandbox's root, changes /etc and /opt, writes HOME,
    /// the workdir and results, reads the plan.
    static let firstAgent = """
        set -e
        mkdir -p /usr/local/bin
        printf '#!/bin/sh\\necho tool-ok\\n' > /usr/local/bin/sbx-tool
        chmod 755 /usr/local/bin/sbx-tool
        mkdir -p /opt/sbx-pkg && echo pkg > /opt/sbx-pkg/VERSION
        rm /etc/issue
        echo agent-setting > /etc/sbx-agent.conf
        echo home-notes > "$HOME/notes.txt"
        mkdir -p "$HOME/.local/lib" && echo lib > "$HOME/.local/lib/site.py"
        echo work > work.txt
        echo result-1 > "$SANDBOXD_RESULTS/report.txt"
        cat "$SANDBOXD_PLAN"
        echo "sandbox=$SANDBOXD_SANDBOX"
        """

    /// A later agent: finds all of it, and cannot write the plan.
    static let laterAgent = """
        sbx-tool
        cat /opt/sbx-pkg/VERSION /etc/sbx-agent.conf "$HOME/notes.txt" "$HOME/.local/lib/site.py" work.txt "$SANDBOXD_RESULTS/report.txt"
        test -e /etc/issue && echo issue-present || echo issue-gone
        cat "$SANDBOXD_PLAN"
        (echo tamper >> "$SANDBOXD_PLAN") 2>/dev/null && echo plan-writable || echo plan-read-only
        pwd
        """

    static let laterExpected = ["tool-ok", "pkg", "agent-setting", "home-notes", "lib", "work", "result-1", "issue-gone",
                                "# Plan: build the thing", "plan-read-only"]

    @Test func handoffAcrossProcessesAndMachines() async throws {
        try await Persist.withHome("handoff") { home in
            let hostIssue = Persist.hostFileHash("/etc/issue")
            try home.scratch.write("plan.md", "# Plan: build the thing\n")
            var r = await home.run("create", "agent", "--plan", home.scratch.path + "/plan.md")
            try #require(r.exitCode == 0, "\(r)")

            r = await home.sh("agent", Self.firstAgent)
            try #require(r.exitCode == 0, "\(r)")
            #expect(r.lines == ["# Plan: build the thing", "sandbox=agent"])

            // A second, separate process resumes and finds everything.
            r = await home.sh("agent", Self.laterAgent)
            #expect(r.exitCode == 0, "\(r)")
            #expect(Array(r.lines.prefix(Self.laterExpected.count)) == Self.laterExpected, "\(r)")
            // The managed workdir sits at one path inside, whatever the state directory.
            #expect(r.lines.last == "/sandbox/work")

            // The host's system directories are untouched.
            #expect(access("/usr/local/bin/sbx-tool", F_OK) != 0)
            #expect(access("/etc/sbx-agent.conf", F_OK) != 0)
            #expect(Persist.hostFileHash("/etc/issue") == hostIssue)
            #expect(access("/opt/sbx-pkg", F_OK) != 0)

            // The manifest recorded both runs; the audit log verifies.
            let info = try await home.json("inspect", "agent", "--json") as? [String: Any]
            #expect(info?["status"] as? String == "idle")
            #expect(info?["run_count"] as? Int == 2)
            let runs = info?["runs"] as? [[String: Any]] ?? []
            #expect(runs.map { $0["state"] as? String } == ["exited", "exited"])
            #expect(runs.map { $0["exit_code"] as? Int } == [0, 0])
            #expect(runs.allSatisfy { $0["workflow_id"] as? String == "wf-it" })
            #expect((runs.first?["resources"] as? [String: Any])?["wall_seconds"] is Double)
            #expect((info?["plan"] as? [String: Any])?["sha256"] as? String == SHA256.hex(of: "# Plan: build the thing\n"))
            r = await home.run("audit", "verify", "agent")
            #expect(r.exitCode == 0, "\(r)")

            // Export, then import into a fresh state directory (another machine), under another name.
            let archive = home.scratch.path + "/agent.sbx"
            r = await home.run("export", "agent", "-o", archive)
            try #require(r.exitCode == 0, "\(r)")
            let other = Persist.Home(path: home.scratch.path + "/other-state", scratch: home.scratch)
            r = await other.run("import", archive, "--name", "resumed")
            try #require(r.exitCode == 0, "\(r)")
            r = await other.sh("resumed", Self.laterAgent)
            #expect(r.exitCode == 0, "\(r)")
            #expect(Array(r.lines.prefix(Self.laterExpected.count)) == Self.laterExpected, "\(r)")
            #expect(r.lines.last == "/sandbox/work", "the workdir moved with the state directory")
            r = await other.run("audit", "verify", "resumed")
            #expect(r.exitCode == 0, "\(r)")
            let imported = try await other.json("inspect", "resumed", "--json") as? [String: Any]
            #expect(imported?["run_count"] as? Int == 3)
            #expect((imported?["imported"] as? [String: Any])?["name"] as? String == "agent")
        }
    }

    @Test func twoExecsAtOnceAreRefusedClearly() async throws {
        try await Persist.withHome("lock") { home in
            var r = await home.run("create", "busy")
            try #require(r.exitCode == 0, "\(r)")
            async let long = home.sh("busy", "sleep 3; echo first-done")
            // Wait until the first exec holds the lock.
            var held = false
            for _ in 0..<100 {
                if let i = try? await home.json("inspect", "busy", "--json") as? [String: Any], i["lock"] is [String: Any] { held = true; break }
                await sbxSleep(0.05)
            }
            #expect(held)
            r = await home.sh("busy", "echo second")
            #expect(r.exitCode == 125, "\(r)")
            #expect(r.stderr.contains("sandbox busy is in use by pid"), "\(r)")
            #expect(r.stderr.contains("(exec) since"), "\(r)")
            #expect(r.stderr.contains("wait or use another sandbox"), "\(r)")
            #expect(!r.stdout.contains("second"))
            // rm and checkpoint are refused too while it runs.
            r = await home.run("rm", "busy")
            #expect(r.exitCode == 125 && r.stderr.contains("in use"), "\(r)")
            let list = try await home.json("list", "--json") as? [[String: Any]]
            #expect(list?.first?["status"] as? String == "running")
            let first = await long
            #expect(first.exitCode == 0 && first.stdout.contains("first-done"), "\(first)")
            r = await home.sh("busy", "echo second")
            #expect(r.exitCode == 0 && r.stdout == "second\n", "\(r)")
        }
    }

    /// sandboxd answers an exec before the run's records and root changes
    /// are on disk (a finisher syncs them and holds the lock meanwhile):
    /// whatever comes next waits for that, and is never refused for it.
    @Test func whatFollowsAnExecWaitsForItsRecords() async throws {
        try await Persist.withHome("finish") { home in
            var r = await home.run("create", "box")
            try #require(r.exitCode == 0, "\(r)")
            for i in 1...12 {
                r = await home.sh("box", "echo \(i) >> /usr/local/runs; wc -l < /usr/local/runs")
                #expect(r.exitCode == 0 && r.stdout == "\(i)\n", "exec \(i): \(r)")
            }
            // Commands that take the lock, straight after an exec.
            r = await home.sh("box", "true")
            #expect(r.exitCode == 0, "\(r)")
            r = await home.run("checkpoint", "box", "--label", "after")
            #expect(r.exitCode == 0, "\(r)")
            r = await home.sh("box", "true")
            #expect(r.exitCode == 0, "\(r)")
            // inspect reads once the last exec's records are in place.
            let info = try await home.json("inspect", "box", "--json") as? [String: Any]
            #expect(info?["lock"] is NSNull, "\(String(describing: info))")
            let runs = info?["runs"] as? [[String: Any]] ?? []
            #expect(runs.count == 10, "the manifest keeps the last 10 runs")
            #expect(runs.allSatisfy { $0["state"] as? String == "exited" && $0["exit_code"] as? Int == 0 }, "\(runs)")
            #expect(runs.last?["id"] as? Int == 14)
            let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: home.dir("box") + "/manifest.json"))) as? [String: Any]
            #expect((manifest?["runs"] as? [[String: Any]])?.last?["id"] as? Int == 14, "the manifest on disk has the last run")
            #expect(!FileSys.list(home.dir("box")).contains { $0.hasPrefix("manifest.json.tmp") })
            r = await home.run("audit", "verify", "box")
            #expect(r.exitCode == 0, "\(r)")
        }
    }

    @Test func checkpointAndRewindThroughTheCLI() async throws {
        try await Persist.withHome("rewind") { home in
            var r = await home.run("create", "cp")
            try #require(r.exitCode == 0, "\(r)")
            r = await home.sh("cp", "echo v1 > state.txt; echo h1 > $HOME/h; mkdir -p /usr/local/bin")
            try #require(r.exitCode == 0, "\(r)")
            r = await home.run("checkpoint", "cp", "--label", "v1")
            #expect(r.exitCode == 0 && r.stdout.hasPrefix("checkpoint 1 (v1) of cp"), "\(r)")
            r = await home.sh("cp", "echo v2 > state.txt; rm $HOME/h; printf '#!/bin/sh\\necho new\\n' > /usr/local/bin/newtool; chmod +x /usr/local/bin/newtool")
            try #require(r.exitCode == 0, "\(r)")
            r = await home.run("checkpoints", "cp", "--json")
            let cps = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]]
            #expect(cps?.map { $0["label"] as? String } == ["v1"])
            r = await home.run("rewind", "cp", "v1")
            #expect(r.exitCode == 0, "\(r)")
            r = await home.sh("cp", "cat state.txt $HOME/h; command -v newtool || echo no-newtool")
            #expect(r.stdout == "v1\nh1\nno-newtool\n", "\(r)")
            r = await home.run("rewind", "cp", "v9")
            #expect(r.exitCode == 125 && r.stderr.contains("no checkpoint 'v9'"), "\(r)")
            r = await home.run("audit", "verify", "cp")
            #expect(r.exitCode == 0, "\(r)")
        }
    }

    @Test func listInspectRemoveAndMistakes() async throws {
        try await Persist.withHome("cli") { home in
            var r = await home.run("list")
            #expect(r.exitCode == 0 && r.stdout.hasPrefix("no sandboxes"), "\(r)")
            r = await home.run("create", "a", "--profile", "reviewer")
            #expect(r.exitCode == 0, "\(r)")
            r = await home.run("create", "a")
            #expect(r.exitCode == 125 && r.stderr.contains("already exists"), "\(r)")
            r = await home.run("create", "../x")
            #expect(r.exitCode == 125 && r.stderr.contains("invalid sandbox name"), "\(r)")
            r = await home.run("create", "b", "--repo", home.scratch.path, "--worker", "w")
            #expect(r.exitCode == 125 && r.stderr.contains("could not be provisioned"), "\(r)")
            #expect(home.entries() == ["a"], "refused creates leave nothing, staging directories included")
            r = await home.run("list")
            #expect(r.exitCode == 0 && r.stdout.contains("a     created  reviewer"), "\(r)")
            // The sandbox keeps its profile: reviewer's workdir is read-only.
            r = await home.sh("a", "echo x > f 2>/dev/null && echo wrote || echo refused; echo $SANDBOXD_PROFILE")
            #expect(r.stdout == "refused\nreviewer\n", "\(r)")
            r = await home.run("exec", "--no-tty", "--workdir", "/tmp", "a", "--", "true")
            #expect(r.exitCode == 125 && r.stderr.contains("has its own workdir"), "\(r)")
            // A word that is not a sandbox is still a command.
            r = await home.run("exec", "--no-tty", "--workdir", home.scratch.path, "echo", "plain")
            #expect(r.exitCode == 0 && r.stdout == "plain\n", "\(r)")
            r = await home.run("inspect", "nope")
            #expect(r.exitCode == 125 && r.stderr.contains("no sandbox named 'nope'"), "\(r)")
            r = await home.run("rm", "a")
            #expect(r.exitCode == 0, "\(r)")
            #expect(home.entries().isEmpty)
        }
    }

    /// A sandbox over a host directory: the workdir is that directory, and rm leaves it.
    @Test func externalWorkdirIsUsedAndKept() async throws {
        try await Persist.withHome("extwd") { home in
            try home.scratch.write("project/README", "hello\n")
            var r = await home.run("create", "ext", "--workdir", home.scratch.path + "/project")
            try #require(r.exitCode == 0, "\(r)")
            r = await home.sh("ext", "cat README; echo built > out.txt; pwd")
            #expect(r.stdout == "hello\n\(home.scratch.path)/project\n", "\(r)")
            #expect(home.scratch.read("project/out.txt") == "built\n")
            r = await home.run("rm", "ext")
            #expect(r.exitCode == 0, "\(r)")
            #expect(home.scratch.read("project/README") == "hello\n")
        }
    }
}
