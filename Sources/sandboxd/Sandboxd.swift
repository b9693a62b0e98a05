import ArgumentParser
import Glibc
import SandboxKit

@main
struct Sandboxd: ParsableCommand {
    /// Like ArgumentParser's main, but a usage error exits 125 as `docker run`
    /// does: 125 always means "sandboxd did not run your command".
    static func main() {
        Forward.ifNeeded()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                CLI.warn(fullMessage(for: error))
                Glibc.exit(125)
            }
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "sandboxd",
        abstract: "Run untrusted commands and AI coding agents in an isolated room.",
        version: SandboxKit.version,
        subcommands: Sandboxd.all
    )

    /// Every subcommand, one file each. Keep this list sorted by how often people use them.
    static let all: [ParsableCommand.Type] = [
        Exec.self, Profiles.self, ProfileCommand.self, Check.self, LockStub.self, GateStub.self, WorktreeStub.self,
        CreateCommand.self, ListCommand.self, InspectCommand.self, RemoveCommand.self,
        CheckpointCommand.self, CheckpointsCommand.self, RewindCommand.self, AuditCommand.self,
        ExportStub.self, ImportStub.self,
    ]
}
