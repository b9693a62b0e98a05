import ArgumentParser
import SandboxKit

/// `sandboxd profile ...`: inspect one profile.
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Inspect a profile.",
        subcommands: [Show.self]
    )

    /// `sandboxd profile show NAME [--json]`.
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Print a profile as sandboxd will apply it: extends followed, defaults filled in.",
            discussion: "The TOML output is itself a valid profile, equal to the one shown."
        )

        @Argument(help: "A profile name (see `sandboxd profiles`) or a path to a .toml file.")
        var name: String

        @Flag(help: "Print JSON (sizes in bytes, durations in seconds) instead of TOML.")
        var json = false

        func run() throws {
            let profile: Profile
            do {
                profile = try ProfileCLI.loader().load(name)
            } catch {
                throw ProfileCLI.fail(error)
            }
            print(json ? profile.renderJSON() : profile.renderTOML(), terminator: "")
        }
    }
}
