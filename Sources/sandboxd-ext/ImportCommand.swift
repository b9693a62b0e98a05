import ArgumentParser
import SandboxExt

/// `sandboxd import FILE [--name NEW]`
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Create a named sandbox from an archive written by `sandboxd export`.",
        discussion: """
            The content digest is verified before anything is unpacked. Refused, with nothing written: \
            absolute paths, '..', links pointing out of the sandbox, device nodes (other than overlay \
            whiteouts), setuid or setgid files, file capabilities, entries larger than declared, and \
            archives whose files add up to more than --max-size. A worker's sandbox is attached to its central \
            repository (or --repo PATH) as a new worktree with the worker's commits, branch, HEAD and index, \
            and its checkpoints come back too.
            """
    )

    @Argument(help: "The archive.")
    var file: String

    @Option(help: "Name of the new sandbox (default: the exported sandbox's name).")
    var name: String?

    @Option(help: "For a worker's sandbox: the central repository to attach its worktree to (default: the one it was exported from).")
    var repo: String?

    @Option(help: "For a worker's sandbox: the worker name to attach it as (default: its own), e.g. when that worker still has a worktree here.")
    var worker: String?

    @Option(name: .customLong("max-size"), help: "Refuse archives whose files add up to more than this (e.g. 64GiB, 500M).")
    var maxSize: String = "64GiB"

    @Option(name: .customLong("workflow-id"), help: "Correlation id for the audit log (default: $SANDBOXD_WORKFLOW_ID).")
    var workflowID: String?

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        guard ArchiveCLI.size(maxSize) != nil else { throw ValidationError("--max-size \(maxSize): expected a size like 64GiB or 500M") }
    }

    func run() throws {
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let s = try SandboxImporter.importArchive(store: StoreCLI.store(), file: file, name: name,
                                                      workflow: StoreCLI.workflow(workflowID), maximumBytes: ArchiveCLI.size(maxSize)!,
                                                      repo: repo, worker: worker)
            if !s.auditIntact {
                CLI.warn("the imported audit log does not verify: \(s.auditProblems.joined(separator: "; "))")
            }
            if json {
                print(JSON.object([
                    ("name", .string(s.name)), ("entries", .int(Int64(s.entries))), ("bytes", .int(Int64(clamping: s.bytes))),
                    ("sha256", .string(s.sha256)), ("seconds", .double(s.seconds)), ("audit_intact", .bool(s.auditIntact)),
                ]).rendered())
            } else {
                print("imported sandbox \(s.name): \(s.entries) entries, \(s.bytes) bytes of files in \(String(format2: s.seconds)) s; sha256 \(s.sha256) verified")
            }
            return 0
        }
    }
}
