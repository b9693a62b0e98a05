import ArgumentParser
import Glibc
import SandboxKit

/// What the named-sandbox commands share: the store, the workflow id, error exits, times.
enum StoreCLI {
    static func store(_ host: HostFacts = .current()) -> SandboxStore { host.store }

    static func workflow(_ explicit: String?) -> String {
        AuditLog.workflowID(explicit, environment: HostFacts.current().environment)
    }

    /// Runs `body`, turning a SandboxError into `sandboxd: message` and its exit code.
    static func run(_ body: () throws(SandboxError) -> Int32) throws {
        switch Result(catching: body) {
        case .success(let code): if code != 0 { throw ArgumentParser.ExitCode(code) }
        case .failure(let e):
            CLI.warn(e.message)
            throw ArgumentParser.ExitCode(e.exitCode)
        }
    }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(Int((v * 10).rounded()) / 10) + "." + String(Int((v * 10).rounded()) % 10) + " " + units[i]
    }

    /// One line for a run: "#3 exited 0 (ls -la) 2025-...".
    static func describe(_ r: SandboxManifest.Run) -> String {
        var s = "#\(r.id) \(r.state.rawValue)"
        if let c = r.exitCode { s += " \(c)" }
        s += " at \(r.start)"
        if !r.argv.isEmpty { s += ": \(r.argv.joined(separator: " "))" }
        return s
    }
}

/// `--workflow-id`, shared by the commands that write audit lines.
struct WorkflowOption: ParsableArguments {
    @Option(name: .customLong("workflow-id"), help: "Correlation id for the audit log (default: $SANDBOXD_WORKFLOW_ID, else a new one).")
    var workflowID: String?
}
