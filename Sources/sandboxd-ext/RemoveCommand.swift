import ArgumentParser
import SandboxKit

/// `sandboxd rm NAME [--force]`
struct RemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove a named sandbox and all its state (a host directory given as --workdir at create is kept).",
        discussion: "Refused while the sandbox is in use, and for a sandbox whose worktree may hold work that has not passed the gate unless --force."
    )

    @Argument(help: "The sandbox's name.")
    var name: String

    @Flag(help: "Remove even if its worktree holds work that has not passed the gate.")
    var force = false

    func run() throws {
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            try StoreCLI.store().remove(name, force: force, workflowID: StoreCLI.workflow(nil))
            print("removed sandbox \(name)")
            return 0
        }
    }
}
