import ArgumentParser
import SandboxKit

@main
struct Sandboxd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandboxd",
        abstract: "Run untrusted commands and AI coding agents in an isolated room.",
        version: SandboxKit.version,
        subcommands: Sandboxd.all
    )

    /// Every subcommand, one file each. Keep this list sorted by how often people use them.
    static let all: [ParsableCommand.Type] = [
        Exec.self, Profiles.self, ProfileCommand.self, Check.self,
    ]
}
