import Testing
@testable import SandboxKit

@Suite("exec options")
struct ExecOptionsTests {
    func parse(_ args: String...) throws(UsageError) -> ExecOptions { try ExecOptions.parse(args[...]) }

    @Test func everyOptionInBothSpellings() throws {
        let spaced = try parse("-p", "ci", "--workdir", "/w", "--timeout", "2.5", "--env", "A=1=2", "--env", "B=",
                               "--ro", "/a", "--rw", "/b:/c", "--dry-run", "--json-report", "-", "--tty",
                               "--workflow-id", "wf", "--", "make", "-j2")
        let attached = try parse("--profile=ci", "--workdir=/w", "--timeout=2.5", "--env=A=1=2", "--env=B=",
                                 "--ro=/a", "--rw=/b:/c", "--dry-run", "--json-report=-", "--tty",
                                 "--workflow-id=wf", "--", "make", "-j2")
        #expect(spaced == attached)
        #expect(spaced.profile == "ci" && spaced.workdir == "/w" && spaced.timeout == 2.5)
        #expect(spaced.environment.map { "\($0.0)|\($0.1)" } == ["A|1=2", "B|"])
        #expect(spaced.readOnly == ["/a"] && spaced.readWrite == ["/b:/c"])
        #expect(spaced.dryRun && spaced.jsonReport == "-" && spaced.tty == true && spaced.workflowID == "wf")
        #expect(spaced.command == ["--", "make", "-j2"])
        #expect(try parse("--no-tty", "true").tty == false)
        #expect(try parse("true").tty == nil)
    }

    @Test func theCommandIsCapturedAsGivenFromItsFirstWord() throws {
        // Options after the command belong to the command, as with argument-parser's passthrough.
        #expect(try parse("--no-tty", "ls", "--profile", "x").command == ["ls", "--profile", "x"])
        #expect(try parse("box", "--", "sh", "-c", "true").command == ["box", "--", "sh", "-c", "true"])
        #expect(try parse("--", "--weird").command == ["--", "--weird"])
        #expect(try parse("-", "x").command == ["-", "x"])
    }

    @Test func repoOptions() throws {
        let o = try parse("--repo", "/r", "--worker", "w1", "--base", "HEAD~1", "--claim", "src/**", "--claim", "a", "--", "true")
        #expect(o.repo == "/r" && o.worker == "w1" && o.base == "HEAD~1" && o.claims == ["src/**", "a"])
    }

    @Test(arguments: [
        (["--bogus", "--", "true"], "unknown option '--bogus'"),
        (["--bogus=1", "true"], "unknown option '--bogus'"),
        (["-x", "true"], "unknown option '-x'"),
        ([], "no command given"),
        (["--"], "no command given"),
        (["--no-tty"], "no command given"),
        (["--workdir"], "--workdir needs a value (DIR)"),
        (["--dry-run=yes", "true"], "--dry-run takes no value"),
        (["--timeout", "0", "true"], "--timeout 0: must be a positive number"),
        (["--timeout", "soon", "true"], "--timeout soon: must be a positive number"),
        (["--timeout", "inf", "true"], "--timeout inf: must be a positive number"),
        (["--env", "NOEQUALS", "true"], "--env NOEQUALS: expected K=V"),
        (["--env", "=v", "true"], "--env =v: expected K=V"),
        (["--ro", "relative", "true"], "--ro relative: expected an absolute PATH"),
        (["--rw", "/a:/b:/c", "true"], "--rw /a:/b:/c: expected an absolute PATH"),
        (["--repo", "/r", "true"], "--repo and --worker go together"),
        (["--worker", "w", "true"], "--repo and --worker go together"),
        (["--claim", "x", "true"], "--base and --claim need --repo and --worker"),
        (["--repo", "/r", "--worker", "w", "--workdir", "/w", "true"], "--workdir and --repo exclude each other"),
    ])
    func usageErrorsNameTheFlag(args: [String], expected: String) {
        let message: String?
        do throws(UsageError) {
            _ = try ExecOptions.parse(args[...])
            message = nil
        } catch {
            message = error.message
        }
        #expect(message?.hasPrefix(expected) == true, "\(args): \(message ?? "accepted")")
    }

    @Test func helpNeedsNoCommandAndListsEveryOption() throws {
        #expect(try parse("--help").helpRequested)
        #expect(try parse("-h").helpRequested)
        let help = ExecOptions.help
        // The flags `exec` is documented to take (README, issue), written out:
        // the help is built from the table, so the table is what must be complete.
        let documented = ["-p", "--profile", "--workdir", "--timeout", "--env", "--ro", "--rw", "--dry-run", "--json-report",
                          "--tty", "--no-tty", "--workflow-id", "--repo", "--worker", "--base", "--claim", "-h", "--help"]
        #expect(ExecOptions.table.flatMap(\.names).sorted() == documented.sorted())
        for name in documented { #expect(help.contains(name), "\(name) missing from the help") }
        for option in ExecOptions.table {
            for name in option.names { #expect(help.contains(name), "\(name) missing from the help") }
        }
        #expect(help.contains("124") && help.contains("125") && help.contains("127"))
    }
}
