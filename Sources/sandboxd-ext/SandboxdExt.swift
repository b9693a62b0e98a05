import ArgumentParser
import SandboxExt

/// The companion binary: `sandboxd lock|gate|worktree|export|import ...` arrive
/// here through execv with the same arguments.
@main
struct SandboxdExt: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandboxd",
        abstract: "sandboxd commands that need libgit2 or libarchive.",
        version: SandboxKit.version,
        subcommands: SandboxdExt.all
    )

    static let all: [ParsableCommand.Type] = [LockCommand.self, GateCommand.self, WorktreeCommand.self, ExportCommand.self, ImportCommand.self]
}
