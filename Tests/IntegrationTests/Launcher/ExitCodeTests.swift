import Foundation
import Glibc
import Testing

/// One way for `sandboxd exec` to end. `$DIR` in flags and command is the test's temporary directory.
struct SbxExitCase: Sendable, CustomTestStringConvertible {
    var name: String
    var flags: [String] = []
    var command: [String]
    var code: Int32
    /// Text sandboxd's stderr must contain.
    var stderr: String? = nil
    /// A bug: the case fails today (see the report in the test's comment).

    var testDescription: String { "\(name) -> \(code)" }

    static let all: [SbxExitCase] = [
        .init(name: "success", command: ["true"], code: 0),
        .init(name: "own exit code", command: ["sh", "-c", "exit 3"], code: 3),
        .init(name: "exit 255", command: ["/probe", "exit", "255"], code: 255),
        .init(name: "SIGINT (probe raises)", command: ["/probe", "raise", "INT"], code: 130),
        .init(name: "SIGINT (sh kills itself)", command: ["sh", "-c", "kill -INT $$"], code: 130),
        .init(name: "SIGTERM (probe raises)", command: ["/probe", "raise", "TERM"], code: 143),
        .init(name: "SIGTERM (sh kills itself)", command: ["sh", "-c", "kill -TERM $$"], code: 143),
        .init(name: "SIGKILL", command: ["sh", "-c", "kill -KILL $$"], code: 137),
        .init(name: "SIGSEGV", command: ["/probe", "raise", "SEGV"], code: 139),
        .init(name: "--timeout", flags: ["--timeout", "0.5"], command: ["/probe", "sleep", "10"], code: 124, stderr: "timed out"),
        .init(name: "profile timeout", flags: ["--profile", "$DIR/profiles/quick.toml"], command: ["/probe", "sleep", "10"], code: 124),
        .init(name: "--timeout with coreutils sleep", flags: ["--timeout", "0.5"], command: ["sleep", "10"], code: 124),
        .init(name: "missing profile file", flags: ["--profile", "$DIR/nonexistent.toml"], command: ["true"], code: 125,
              stderr: "nonexistent.toml"),
        .init(name: "unknown profile name", flags: ["--profile", "no-such-profile"], command: ["true"], code: 125,
              stderr: "no-such-profile"),
        .init(name: "malformed TOML names file:line", flags: ["--profile", "$DIR/profiles/broken.toml"], command: ["true"],
              code: 125, stderr: "broken.toml:3"),
        .init(name: "unknown flag", flags: ["--no-such-flag"], command: ["true"], code: 125),
        .init(name: "bad --timeout", flags: ["--timeout", "-1"], command: ["true"], code: 125),
        .init(name: "relative --ro", flags: ["--ro", "relative/path"], command: ["true"], code: 125),
        .init(name: "missing --ro source", flags: ["--ro", "$DIR/missing"], command: ["true"], code: 125),
        .init(name: "missing --rw source", flags: ["--rw", "$DIR/missing"], command: ["true"], code: 125),
        // pid 1 fails while sandboxd makes the cgroups (v1): its own error, not a broken handoff.
        .init(name: "mount target under read-only /usr", flags: ["--ro", "$DIR:/usr/sbx-no-such-dir"], command: ["true"],
              code: 125, stderr: "-> /usr/sbx-no-such-dir): Read-only file system"),
        .init(name: "non-executable file", command: ["./not-executable"], code: 126, stderr: "not-executable"),
        .init(name: "a directory", command: ["/usr"], code: 126),
        .init(name: "command not found", command: ["no-such-command-sbx"], code: 127, stderr: "no-such-command-sbx"),
        .init(name: "missing path", command: ["/no/such/file"], code: 127),
    ]
}

@Suite("Launcher: exit codes")
struct ExitCodeTests {
    @Test("exit code", arguments: SbxExitCase.all)
    func exitCode(_ c: SbxExitCase) async throws {
        try await withSbxTemp("exit") { dir in
            try dir.write("not-executable", "#!/bin/sh\nexit 0\n", mode: 0o644)
            try sbxProfile(dir, "broken", "[limits]\nmemory = = \"64MiB\"\n")
            try sbxProfile(dir, "quick", "[limits]\ntimeout = 1\n")
            let subst = { (s: String) in s.replacingOccurrences(of: "$DIR", with: dir.path) }
            let sbx = SbxExec(workdir: dir.path, flags: c.flags.map(subst))
            let r = await sbx.run(c.command.map(subst))
            let check = {
                #expect(r.exitCode == c.code, "\(r)")
                if let text = c.stderr { #expect(r.stderr.contains(text), "\(r)") }
                if c.code == 124 { #expect(r.seconds < 5, "\(r)") }
                if c.code >= 124 && c.code <= 127 { #expect(r.stderr.hasPrefix("sandboxd: "), "\(r)") }
            }
            check()
            #expect(await SbxHost.cgroupsLeft(named: "sandboxd-\(r.pid)").isEmpty)
        }
    }
}

@Suite("Launcher: reports")
struct ReportTests {
    @Test("--json-report FILE has every field, with sane values")
    func reportFields() async throws {
        try await withSbxTemp("report") { dir in
            let report = dir.path + "/report.json"
            let r = await SbxExec(workdir: dir.path, flags: ["--json-report", report]).run(["sh", "-c", "echo out; exit 3"])
            #expect(r.exitCode == 3 && r.stdout == "out\n", "\(r)")
            let json = try sbxJSON(try #require(dir.read("report.json")))
            for key in ["exit_code", "signal", "timed_out", "wall_seconds", "cpu_user_seconds", "cpu_system_seconds",
                        "peak_memory_bytes", "oom_killed", "profile"] {
                #expect(json[key] != nil, "missing \(key) in \(json)")
            }
            #expect(json["exit_code"] as? Int == 3)
            #expect(json["signal"] is NSNull)
            #expect(json["timed_out"] as? Bool == false)
            #expect(json["oom_killed"] as? Bool == false)
            #expect(json["profile"] as? String == "worker")
            let wall = try #require(json["wall_seconds"] as? Double)
            #expect(wall > 0 && wall <= r.seconds + 0.5, "wall \(wall), measured \(r.seconds)")
            let user = try #require(json["cpu_user_seconds"] as? Double)
            let sys = try #require(json["cpu_system_seconds"] as? Double)
            #expect(user >= 0 && sys >= 0 && user + sys <= wall + 1)
            let peak = try #require(json["peak_memory_bytes"] as? Int)
            #expect(peak > 0 && peak < 4 << 30, "peak \(peak)")
        }
    }

    @Test("--json-report - prints the report on stdout; a timeout and a signal are reported")
    func reportOnStdout() async throws {
        try await withSbxTemp("report") { dir in
            let r = await SbxExec(workdir: dir.path, flags: ["--json-report", "-", "--timeout", "0.5"]).probe("sleep", "10")
            #expect(r.exitCode == 124, "\(r)")
            let json = try sbxJSON(r.stdout)
            #expect(json["timed_out"] as? Bool == true, "\(json)")
            #expect(json["exit_code"] as? Int == 124, "\(json)")
            #expect(json["signal"] as? Int == 9, "\(json)")

            let sig = await SbxExec(workdir: dir.path, flags: ["--json-report", "-"]).probe("raise", "TERM")
            let sj = try sbxJSON(sig.stdout)
            #expect(sj["signal"] as? Int == 15 && sj["exit_code"] as? Int == 143, "\(sj)")
        }
    }

    @Test("--dry-run --json-report - prints the plan and runs nothing")
    func dryRun() async throws {
        try await withSbxTemp("dry") { dir in
            let fx = try SecretsFixture(dir)
            let sbx = SbxExec(workdir: fx.workdir, flags: ["--dry-run", "--json-report", "-"])
            let r = await sbx.probe("write", fx.workdir + "/ran", "x")
            #expect(r.exitCode == 0, "\(r)")
            #expect(!dir.exists("work/ran"), "the command ran")
            #expect(SbxHost.cgroupDirs(named: "sandboxd-\(r.pid)").isEmpty)
            let json = try sbxJSON(r.stdout)
            #expect(json["profile"] as? String == "worker")
            #expect(json["argv"] as? [String] == ["/probe", "write", fx.workdir + "/ran", "x"])
            #expect(json["cwd"] as? String == fx.workdir)
            let mounts = try #require(json["mounts"] as? [[String: Any]])
            func has(_ kind: String, _ target: String) -> Bool {
                mounts.contains { $0["kind"] as? String == kind && $0["target"] as? String == target }
            }
            #expect(has("bind", fx.workdir))
            #expect(has("bind", "/probe"))
            #expect(has("proc", "/proc"))
            #expect(has("tmpfs", "/tmp"))
            #expect(has("mask", fx.workdir + "/.env"))
            #expect(has("mask", fx.workdir + "/a/b/c/d/key.pem"))
            #expect(has("mask", fx.workdir + "/notes.txt"))
            #expect(has("readonly", fx.workdir + "/.git/hooks"))
            #expect(json["capabilities"] as? [String] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL"]
                    || (json["capabilities"] as? [String])?.count == 7, "\(json["capabilities"] ?? "nil")")
            // Without --json-report: the summary for people.
            let text = await SbxExec(workdir: fx.workdir, flags: ["--dry-run"]).probe("write", fx.workdir + "/ran", "x")
            #expect(text.exitCode == 0 && text.stdout.contains("mounts") && text.stdout.contains(fx.workdir), "\(text)")
            #expect(!dir.exists("work/ran"))
        }
    }
}
