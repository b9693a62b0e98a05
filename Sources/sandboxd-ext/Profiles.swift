import ArgumentParser
import Glibc
import SandboxKit

/// `sandboxd profiles`: every profile reachable by name, where it comes from, and what it is for.
struct Profiles: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profiles",
        abstract: "List the available profiles.",
        discussion: """
            Names are looked up in ./profiles, then each directory of $SANDBOXD_PROFILES \
            (colon-separated), then /etc/sandboxd/profiles, then the built-in set; the first \
            file with a name wins and is the one listed. See docs/PROFILES.md.
            """
    )

    func run() throws {
        let rows = ProfileCLI.loader().available().map { summary in
            let description = summary.error.map { "INVALID: \($0)" } ?? summary.description
            return [summary.name, summary.source, description]
        }
        print(ProfileCLI.columns([["NAME", "SOURCE", "DESCRIPTION"]] + rows), terminator: "")
    }
}

/// What the profile commands share (and `exec` can use): a loader for this process, error exit.
enum ProfileCLI {
    /// A loader for the current directory, environment and home of this process.
    static func loader(_ host: HostFacts = .current()) -> ProfileLoader { host.profileLoader }

    /// Prints `sandboxd: <error>` to stderr and returns the exit to throw (125).
    static func fail(_ error: ProfileError) -> ArgumentParser.ExitCode {
        CLI.warn(error.description)
        return ArgumentParser.ExitCode(error.exitCode)
    }

    /// Rows as left-aligned columns separated by two spaces; the last column is not padded.
    static func columns(_ rows: [[String]]) -> String {
        guard let width = rows.map(\.count).max(), width > 0 else { return "" }
        let widths = (0..<width).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count + 2)
            }.joined() + "\n"
        }.joined()
    }
}
