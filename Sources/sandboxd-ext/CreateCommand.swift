import ArgumentParser
import SandboxKit

/// `sandboxd create NAME [--profile P] [--workdir DIR] [--plan FILE] [--repo R --worker W]`
struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a named, persistent sandbox; `sandboxd exec NAME -- CMD` then runs in it.",
        discussion: """
            What persists from one exec to the next: changes to the root outside the workdir (installed tools), \
            HOME, the workdir, the plan (read-only at /sandbox/plan.md, $SANDBOXD_PLAN), results \
            (/sandbox/results, $SANDBOXD_RESULTS) and the audit log. State lives in $SANDBOXD_HOME/sandboxes/NAME.
            """
    )

    @Argument(help: "The sandbox's name: letters, digits, '.', '_', '-'.")
    var name: String

    @Option(name: .shortAndLong, help: "Profile name or path to a .toml file; a resolved copy is kept in the sandbox.")
    var profile: String = "worker"

    @Option(help: "Use this host directory as the workdir (default: the sandbox's own workdir directory).")
    var workdir: String?

    @Option(help: "Copy this file in as the plan, readable but not writable inside, at /sandbox/plan.md.")
    var plan: String?

    @Option(help: "A central repository whose worker worktree (branch sandboxd/WORKER) becomes the workdir.")
    var repo: String?

    @Option(help: "The worker name for --repo.")
    var worker: String?

    @OptionGroup var workflow: WorkflowOption

    @Flag(help: "Print the manifest as JSON.")
    var json = false

    func validate() throws {
        if (repo == nil) != (worker == nil) { throw ValidationError("--repo and --worker go together") }
        if repo != nil && workdir != nil { throw ValidationError("--repo and --workdir exclude each other") }
    }

    func run() throws {
        let loaded: Profile
        do { loaded = try ProfileCLI.loader().load(profile) } catch { throw ProfileCLI.fail(error) }
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let store = StoreCLI.store()
            let m = try store.create(CreateOptions(
                name: name, profile: loaded, workdir: workdir, planFile: plan,
                repository: repo.map { SandboxManifest.Repository(path: $0, worker: worker ?? "", base: nil) },
                workflowID: StoreCLI.workflow(workflow.workflowID)))
            if json {
                print(m.json.rendered())
            } else {
                print("created sandbox \(m.name) (profile \(m.profileName)) in \(store.paths(m.name).dir)")
            }
            return 0
        }
    }
}
