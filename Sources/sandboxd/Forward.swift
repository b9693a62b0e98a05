import Glibc
import SandboxKit

/// Everything but `exec` runs in `sandboxd-ext`, next to this binary: it needs
/// swift-argument-parser, libgit2 or libarchive, each of which would cost every
/// `sandboxd exec` start-up time if linked here.
enum Forward {
    /// Replaces this process by `sandboxd-ext` with the same arguments; exits 125 if it cannot.
    static func toCompanion(_ arguments: [String]) -> Never {
        let ext = companionBinary("sandboxd-ext")
        let cArgs = arguments.map { strdup($0) } + [nil]
        execv(ext, cArgs)
        let e = errno
        CLI.warn("\(ext) could not be run: \(String(cString: strerror(e))); build or install sandboxd-ext next to sandboxd")
        exit(ExitCode.sandboxFailed)
    }
}
