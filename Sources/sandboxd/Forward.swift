import Glibc
import SandboxKit

/// Subcommands that live in the companion binary `sandboxd-ext` (they need
/// libgit2 or libarchive, which would cost every `sandboxd exec` start-up
/// time if linked here). `sandboxd NAME ...` for one of these names is
/// replaced by `sandboxd-ext NAME ...` from the same directory, same arguments.
enum Forward {
    /// The forwarded subcommand names: one list, extended as commands move.
    static let commands: [String] = ["export", "import", "lock", "gate", "worktree"]

    /// Called first thing in `main`: execs `sandboxd-ext` when the first
    /// argument (or `help X`) names a forwarded command; returns otherwise.
    static func ifNeeded() {
        let args = CommandLine.arguments
        guard args.count > 1 else { return }
        let target = args[1] == "help" && args.count > 2 ? args[2] : args[1]
        guard commands.contains(target) else { return }
        let ext = companionBinary("sandboxd-ext")
        let cArgs = args.map { strdup($0) } + [nil]
        execv(ext, cArgs)
        let e = errno
        CLI.warn("`\(target)` is provided by \(ext), which could not be run: \(String(cString: strerror(e))); build or install sandboxd-ext next to sandboxd")
        exit(125)
    }
}
