import ArgumentParser
import Glibc
import SandboxExt

/// Every sandboxd subcommand but `exec`: `sandboxd NAME ...` arrives here from
/// the launcher through execv with the same arguments (see Sources/sandboxd).
@main
struct SandboxdExt: ParsableCommand {
    /// Like ArgumentParser's main, but a usage error exits 125 as `docker run`
    /// does: 125 always means "sandboxd did not run your command".
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                CLI.warn(fullMessage(for: error))
                Glibc.exit(SandboxExitCode.sandboxFailed)
            }
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "sandboxd",
        abstract: "Run untrusted commands and AI coding agents in an isolated room.",
        version: SandboxKit.version,
        subcommands: SandboxdExt.all
    )

    /// Every subcommand, one file each. Keep this list sorted by how often people use them.
    static let all: [ParsableCommand.Type] = [
        ExecStub.self, Profiles.self, ProfileCommand.self, Check.self, LockCommand.self, GateCommand.self, WorktreeCommand.self,
        CreateCommand.self, ListCommand.self, InspectCommand.self, RemoveCommand.self,
        CheckpointCommand.self, CheckpointsCommand.self, RewindCommand.self, AuditCommand.self,
        ExportCommand.self, ImportCommand.self,
    ]
}

/// `exec` runs in the launcher binary, parsed by hand (see ExecOptions): this
/// entry lists it in `sandboxd --help` and sends a direct `sandboxd-ext exec` back.
struct ExecStub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a sandbox (`sandboxd exec --help` for its options).",
        shouldDisplay: true
    )

    @Argument(parsing: .allUnrecognized)
    var arguments: [String] = []

    func run() throws {
        let launcher = companionBinary("sandboxd")
        let cArgs = ([launcher, "exec"] + arguments).map { strdup($0) } + [nil]
        execv(launcher, cArgs)
        let failure = SandboxError("\(launcher) could not be run: \(String(cString: strerror(errno)))")
        CLI.warn(failure.message)
        throw ExitCode(failure.exitCode)
    }
}
