import ArgumentParser
import Glibc
import SandboxKit

/// `sandboxd exec`: run one command in a new sandbox and report how it ended.
/// `sandboxd exec NAME -- CMD` resumes the named sandbox NAME instead (see `create`).
struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a sandbox.",
        discussion: """
            Exit status: the command's own; 128+N if it died of signal N; 124 if the timeout \
            killed it; 125 if sandboxd could not set up the sandbox (bad flags or profile \
            included, or the named sandbox is in use); 126 if the command cannot be executed; \
            127 if it was not found. `sandboxd exec NAME -- CMD`, NAME being a sandbox made \
            by `sandboxd create`, runs in that sandbox with its profile, workdir, root changes, \
            HOME, plan and results.
            """
    )

    @Option(name: .shortAndLong, help: "Profile name or path to a .toml file (default: worker).")
    var profile: String?

    @Option(help: "Directory mounted at its own path as the workdir, and the command's working directory (default: the current directory).")
    var workdir: String?

    @Option(help: "Kill the sandbox after this many seconds (exit 124). Overrides the profile's timeout.")
    var timeout: Double?

    @Option(name: .customLong("env"), help: ArgumentHelp("Set a variable inside (repeatable).", valueName: "K=V"))
    var env: [String] = []

    @Option(name: .customLong("ro"), help: ArgumentHelp("Bind a host path read-only (repeatable).", valueName: "PATH[:DEST]"))
    var readOnly: [String] = []

    @Option(name: .customLong("rw"), help: ArgumentHelp("Bind a host path read-write (repeatable).", valueName: "PATH[:DEST]"))
    var readWrite: [String] = []

    @Flag(help: "Print the launch plan instead of running anything.")
    var dryRun = false

    @Option(help: ArgumentHelp("Write a JSON report (or the plan, with --dry-run) to FILE; '-' for stdout.", valueName: "FILE"))
    var jsonReport: String?

    @Flag(inversion: .prefixedNo, help: "Give the command a terminal (default: when stdin and stdout are terminals).")
    var tty: Bool?

    @Option(name: .customLong("workflow-id"), help: "Correlation id in a named sandbox's audit log (default: $SANDBOXD_WORKFLOW_ID).")
    var workflowID: String?

    @Option(help: "Run in the worktree of worker --worker of this repository; the gate checks its changes afterwards.")
    var repo: String?

    @Option(help: "The worker (with --repo): its worktree is on branch sandboxd/NAME.")
    var worker: String?

    @Option(help: "With --repo: the commit a new worktree starts from (default: the repository's HEAD).")
    var base: String?

    @Option(name: .customLong("claim"), help: ArgumentHelp("With --repo: a path or glob the worker claims before it starts (repeatable); a conflict exits 75.", valueName: "PATTERN"))
    var claims: [String] = []

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (or a sandbox name, `--`, then the command).")
    var command: [String] = []

    func validate() throws {
        if command.first == "--" && command.count == 1 || command.isEmpty {
            throw ValidationError("no command given; usage: sandboxd exec [OPTIONS] -- CMD [ARG...]")
        }
        // The command is captured as-is, so an option sandboxd does not know lands
        // here first: refuse it rather than try to run it.
        if let first = command.first, first.hasPrefix("-"), first != "--" {
            throw ValidationError("unknown option '\(first)'; see `sandboxd exec --help` (put the command after `--`)")
        }
        if let t = timeout, !(t > 0) { throw ValidationError("--timeout \(t): must be a positive number of seconds") }
        for e in env where !e.contains("=") || e.hasPrefix("=") {
            throw ValidationError("--env \(e): expected K=V")
        }
        if (repo == nil) != (worker == nil) { throw ValidationError("--repo and --worker go together") }
        if repo == nil && (base != nil || !claims.isEmpty) { throw ValidationError("--base and --claim need --repo and --worker") }
        if repo != nil && workdir != nil { throw ValidationError("--workdir and --repo exclude each other: the workdir is the worker's worktree") }
        for spec in readOnly + readWrite {
            let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count > 2 || parts.contains(where: { !$0.hasPrefix("/") }) {
                throw ValidationError("--ro/--rw \(spec): expected an absolute PATH or PATH:DEST")
            }
        }
    }

    func run() throws {
        let host = HostFacts.current()
        if profile == nil, let named = NamedExec.split(command, store: StoreCLI.store(host)) {
            return try runNamed(named.name, named.argv, host)
        }
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        let profileValue: Profile
        switch Result(catching: { () throws(ProfileError) -> Profile in try ProfileCLI.loader(host).load(profile ?? "worker") }) {
        case .success(let p): profileValue = p
        case .failure(let e): throw ProfileCLI.fail(e)
        }
        switch Result(catching: { () throws(SandboxError) -> Int32 in
            if let repo, let worker { return try runInRepo(repo, worker, profileValue, request(argv, host)) }
            return try execute(profileValue, request(argv, host))
        }) {
        case .success(let code): if code != 0 { throw ArgumentParser.ExitCode(code) }
        case .failure(let e):
            CLI.warn(e.message)
            throw ArgumentParser.ExitCode(e.exitCode)
        }
    }

    /// `exec NAME -- CMD`: the named sandbox's profile, workdir and state; the lock held while it runs.
    private func runNamed(_ name: String, _ argv: [String], _ host: HostFacts) throws {
        guard workdir == nil else {
            CLI.warn("exec \(name): a named sandbox has its own workdir; --workdir applies to throwaway sandboxes only")
            throw ArgumentParser.ExitCode(ExitCode.sandboxFailed)
        }
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let store = StoreCLI.store(host)
            let template = request(argv, host)
            if dryRun {
                let plan = try NamedExec.plan(store: store, name: name, template: template)
                if let path = jsonReport { try emit(plan.json.rendered() + "\n", to: path) } else { print(plan.summary, terminator: "") }
                return 0
            }
            let (plan, result) = try NamedExec.run(store: store, name: name, template: template,
                                                   workflowID: AuditLog.workflowID(workflowID, environment: host.environment),
                                                   cgroupName: "sandboxd-\(getpid())")
            return try report(plan, result)
        }
    }

    /// `exec --repo R --worker W`: provision and claim, run in the worktree, then
    /// gate and release. The exit code is the command's, or 1 if the command
    /// succeeded but the gate rejected its changes.
    private func runInRepo(_ repo: String, _ worker: String, _ profile: Profile, _ template: ExecRequest) throws(SandboxError) -> Int32 {
        let session = try RepoSession.begin(repo: repo, worker: worker, base: base, claims: dryRun ? [] : claims)
        var request = template
        request.workdir = session.workdir
        request.readOnly += session.readOnly
        request.readWrite += session.readWrite
        let plan: LaunchPlan
        let result: SandboxResult
        do throws(SandboxError) {
            plan = try Planner().plan(profile: profile, request: request)
            if dryRun {
                if let path = jsonReport { try emit(plan.json.rendered() + "\n", to: path) } else { print(plan.summary, terminator: "") }
                return 0
            }
            result = try Supervisor().run(plan, cgroupName: "sandboxd-\(getpid())")
        } catch {
            _ = session.finish(runID: "exec-\(getpid())-failed")
            throw error
        }
        let gate = session.finish(runID: "exec-\(getpid())")
        CLI.warn(gate.passed ? "gate: passed; refs/heads/sandboxd/\(worker) holds the work" : "gate: REJECTED the changes of \(worker); nothing came back (see `sandboxd gate --repo \(repo) --worker \(worker)`)")
        let code = try report(plan, result, extra: [("gate", gate.report ?? .object([("passed", .bool(gate.passed))]))])
        return code == 0 && !gate.passed ? 1 : code
    }

    private func request(_ argv: [String], _ host: HostFacts) -> ExecRequest {
        ExecRequest(
            argv: argv,
            workdir: workdir ?? host.cwd,
            timeout: timeout,
            env: env.map { e in
                let i = e.firstIndex(of: "=")!
                return (String(e[..<i]), String(e[e.index(after: i)...]))
            },
            readOnly: readOnly,
            readWrite: readWrite,
            tty: tty ?? (isatty(0) != 0 && isatty(1) != 0),
            hostEnvironment: host.environment,
            hostHome: host.home,
            hostUID: geteuid(),
            hostGID: getegid()
        )
    }

    /// Plans, then prints the plan or runs it; returns the exit code.
    private func execute(_ profile: Profile, _ request: ExecRequest) throws(SandboxError) -> Int32 {
        let plan = try Planner().plan(profile: profile, request: request)
        if dryRun {
            if let path = jsonReport { try emit(plan.json.rendered() + "\n", to: path) } else { print(plan.summary, terminator: "") }
            return 0
        }
        return try report(plan, try Supervisor().run(plan, cgroupName: "sandboxd-\(getpid())"))
    }

    /// Writes the report and the warnings; returns the exit code.
    private func report(_ plan: LaunchPlan, _ result: SandboxResult, extra: [(String, JSON)] = []) throws(SandboxError) -> Int32 {
        if let path = jsonReport {
            var json = result.json
            for (k, v) in extra { json = json.setting(k, v) }
            try emit(json.rendered() + "\n", to: path)
        }
        if result.timedOut { CLI.warn("timed out after \(plan.timeout) s; the sandbox was killed") }
        for w in result.warnings { CLI.warn("WARNING: \(w)") }
        if result.oomKilled { CLI.warn("the memory limit (\(plan.limits.memory) bytes) was reached; the kernel killed a process in the sandbox") }
        return result.exitCode
    }

    private func emit(_ text: String, to path: String) throws(SandboxError) {
        if path == "-" { print(text, terminator: ""); return }
        try writeFileAtomically(path, Array(text.utf8))
    }
}
