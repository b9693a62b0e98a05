import ArgumentParser
import SandboxExt

/// `sandboxd gate --repo R --worker W [--json]`: check a worker's work and, if it passes, bring it back.
struct GateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gate",
        abstract: "Check a worker's commits and uncommitted changes; on pass, move refs/heads/sandboxd/WORKER to them.",
        discussion: """
            Rules (the built-in profile's [gate] defaults): maximum diff size in lines and bytes, forbidden paths,
            existing tests may not be modified or deleted, and, when the worker holds claims, only claimed paths
            may change. On failure nothing in the central repository changes and the exit code is 1.
            """
    )

    @Option(help: "The central repository (a path inside it).")
    var repo: String = "."

    @Option(help: "The worker whose worktree is checked.")
    var worker: String

    @Option(name: .customLong("run"), help: "The sandbox run this work came from, named in the commit the gate makes for uncommitted changes.")
    var runID: String?

    @Option(name: .customLong("claim"), help: "A path pattern the worker may change (repeatable). Default: the worker's locks on refs/sandboxd/locks.")
    var claims: [String] = []

    @Option(help: "Read the worker's claims from this remote's lock ref (see `lock --remote`).")
    var remote: String?

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        try WorkspaceCLI.run {
            let report = try Gate.run(repo: repo, worker: worker, rules: GateRules(Profile.Gate()), run: runID,
                                       claims: claims.isEmpty ? nil : claims, remote: remote)
            print(json ? report.json.rendered(pretty: true) : report.text, terminator: json ? "\n" : "")
            return report.passed ? 0 : 1
        }
    }
}
