import ArgumentParser
import Glibc
import SandboxKit

/// `sandboxd check`: which kernel features this host has, what is missing and how to
/// enable it, then a real launch of `/bin/true` in the default profile.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Report the kernel features sandboxd needs, and try a real sandbox.",
        discussion: "Exit status 0 when every required feature is present and the test sandbox ran; 1 otherwise."
    )

    @Flag(help: "Skip the test launch.")
    var noLaunch = false

    func run() throws {
        var failed = false
        for item in HostCheck().run() {
            let mark = item.ok ? "ok     " : (item.required ? "MISSING" : "absent ")
            print("\(mark) \(item.name): \(item.detail)")
            if let fix = item.fix, !item.ok { print("        fix: \(fix)") }
            if !item.ok && item.required { failed = true }
        }
        if !noLaunch {
            let result = launchProbe()
            print(result.ok ? "ok      test sandbox: /bin/true ran in profile worker" : "FAILED  test sandbox: \(result.message)")
            failed = failed || !result.ok
        }
        if failed { throw ArgumentParser.ExitCode(1) }
    }

    private func launchProbe() -> (ok: Bool, message: String) {
        let host = HostFacts.current()
        let request = ExecRequest(argv: ["/bin/true"], workdir: "/tmp", hostEnvironment: [:], hostHome: host.home,
                                  hostUID: geteuid(), hostGID: getegid())
        let outcome = Result { () throws(SandboxError) -> SandboxResult in
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: request)
            return try Supervisor().run(plan, cgroupName: "sandboxd-check-\(getpid())")
        }
        switch outcome {
        case .success(let r): return (r.exitCode == 0, "exit \(r.exitCode)")
        case .failure(let e): return (false, e.message)
        }
    }
}
