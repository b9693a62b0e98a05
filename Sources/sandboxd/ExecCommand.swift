import Glibc
import SandboxKit

/// `sandboxd exec`: run one command in a new sandbox and report how it ended.
/// `sandboxd exec NAME -- CMD` resumes the named sandbox NAME instead (see `create`).
struct ExecCommand {
    let options: ExecOptions
    let host: HostFacts
    /// Made on a helper thread while the profile loads and the plan is made.
    let network: PreparedNetwork?
    /// This process exits once the report is out: the janitor releases the
    /// emptied sandbox (mount tree, cgroups) as it returns.
    var supervisor: Supervisor { Supervisor(network: network, teardown: .afterReturn) }

    /// Parses the arguments after `exec`, runs, and returns the exit status.
    static func main(_ args: ArraySlice<String>) -> Int32 {
        let options: ExecOptions
        do throws(UsageError) {
            options = try ExecOptions.parse(args)
        } catch {
            CLI.warn(error.message)
            return ExitCode.sandboxFailed
        }
        if options.helpRequested {
            print(ExecOptions.help, terminator: "")
            return 0
        }
        let network = options.dryRun ? nil : PreparedNetwork.start()
        let command = ExecCommand(options: options, host: HostFacts.current(), network: network)
        switch Result(catching: command.run) {
        case .success(let code): return code
        case .failure(let e):
            CLI.warn(e.message)
            return e.exitCode
        }
    }

    func run() throws(SandboxError) -> Int32 {
        if options.profile == nil, let named = NamedExec.split(options.command, store: host.store) {
            return try runNamed(named.name, named.argv)
        }
        let argv = options.command.first == "--" ? Array(options.command.dropFirst()) : options.command
        let profile: Profile
        do throws(ProfileError) {
            profile = try host.profileLoader.load(options.profile ?? "worker")
        } catch {
            throw SandboxError(error.description, exitCode: error.exitCode)
        }
        if let repo = options.repo, let worker = options.worker {
            return try runInRepo(repo, worker, profile, request(argv))
        }
        return try execute(profile, request(argv))
    }

    /// `exec NAME -- CMD`: the named sandbox's profile, workdir and state; the lock held while it runs.
    private func runNamed(_ name: String, _ argv: [String]) throws(SandboxError) -> Int32 {
        guard options.workdir == nil else {
            throw SandboxError("exec \(name): a named sandbox has its own workdir; --workdir applies to throwaway sandboxes only",
                               exitCode: ExitCode.sandboxFailed)
        }
        let store = host.store
        let template = request(argv)
        if options.dryRun { return try emitPlan(try NamedExec.plan(store: store, name: name, template: template)) }
        let (plan, result) = try NamedExec.run(store: store, name: name, template: template,
                                               workflowID: AuditLog.workflowID(options.workflowID, environment: host.environment),
                                               cgroupName: "sandboxd-\(getpid())", supervisor: supervisor)
        return try report(plan, result)
    }

    /// `exec --repo R --worker W`: provision and claim, run in the worktree, then
    /// gate and release. The exit code is the command's, or 1 if the command
    /// succeeded but the gate rejected its changes.
    private func runInRepo(_ repo: String, _ worker: String, _ profile: Profile, _ template: ExecRequest) throws(SandboxError) -> Int32 {
        let session = try RepoSession.begin(repo: repo, worker: worker, base: options.base, claims: options.dryRun ? [] : options.claims)
        var request = template
        request.workdir = session.workdir
        request.readOnly += session.readOnly
        request.readWrite += session.readWrite
        let plan: LaunchPlan
        let result: SandboxResult
        do throws(SandboxError) {
            plan = try Planner().plan(profile: profile, request: request)
            if options.dryRun { return try emitPlan(plan) }
            result = try supervisor.run(plan, cgroupName: "sandboxd-\(getpid())")
        } catch {
            _ = session.finish(runID: "exec-\(getpid())-failed")
            throw error
        }
        let gate = session.finish(runID: "exec-\(getpid())")
        CLI.warn(gate.passed ? "gate: passed; refs/heads/sandboxd/\(worker) holds the work" : "gate: REJECTED the changes of \(worker); nothing came back (see `sandboxd gate --repo \(repo) --worker \(worker)`)")
        let code = try report(plan, result, extra: [("gate", gate.report ?? .object([("passed", .bool(gate.passed))]))])
        return code == 0 && !gate.passed ? 1 : code
    }

    private func request(_ argv: [String]) -> ExecRequest {
        ExecRequest(
            argv: argv,
            workdir: options.workdir ?? host.cwd,
            timeout: options.timeout,
            env: options.environment,
            readOnly: options.readOnly,
            readWrite: options.readWrite,
            tty: options.tty ?? (isatty(0) != 0 && isatty(1) != 0),
            hostEnvironment: host.environment,
            hostHome: host.home,
            hostUID: geteuid(),
            hostGID: getegid()
        )
    }

    /// Plans, then prints the plan or runs it; returns the exit code.
    private func execute(_ profile: Profile, _ request: ExecRequest) throws(SandboxError) -> Int32 {
        let plan = try Planner().plan(profile: profile, request: request)
        if options.dryRun { return try emitPlan(plan) }
        return try report(plan, try supervisor.run(plan, cgroupName: "sandboxd-\(getpid())"))
    }

    /// Writes the report and the warnings; returns the exit code.
    private func report(_ plan: LaunchPlan, _ result: SandboxResult, extra: [(String, JSON)] = []) throws(SandboxError) -> Int32 {
        if let path = options.jsonReport {
            var json = result.json
            for (k, v) in extra { json = json.setting(k, v) }
            try emit(json.rendered() + "\n", to: path)
        }
        if result.timedOut { CLI.warn("timed out after \(plan.timeout) s; the sandbox was killed") }
        for w in result.warnings { CLI.warn("WARNING: \(w)") }
        if result.oomKilled { CLI.warn("the memory limit (\(plan.limits.memory) bytes) was reached; the kernel killed a process in the sandbox") }
        return result.exitCode
    }

    /// `--dry-run`: the plan as JSON to the --json-report target, else as a summary.
    private func emitPlan(_ plan: LaunchPlan) throws(SandboxError) -> Int32 {
        if let path = options.jsonReport { try emit(plan.json.rendered() + "\n", to: path) } else { print(plan.summary, terminator: "") }
        return 0
    }

    private func emit(_ text: String, to path: String) throws(SandboxError) {
        if path == "-" { print(text, terminator: ""); return }
        try writeFileAtomically(path, Array(text.utf8))
    }
}
