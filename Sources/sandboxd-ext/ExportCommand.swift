import ArgumentParser
import SandboxExt

/// `sandboxd export NAME -o FILE`
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a named sandbox into one archive (tar + zstd, with a content digest).",
        discussion: """
            The archive holds the manifest, root changes, HOME, workdir, plan, results, audit log and \
            checkpoints (and a worker's git directory and worktree metadata), with file contents, modes, ownership, symlinks, hard links, overlay \
            attributes and timestamps. `tar --zstd -xf FILE` reads it; `sandboxd import FILE` \
            verifies and restores it. The sandbox is locked while it is written.
            """
    )

    @Argument(help: "The sandbox's name.")
    var name: String

    @Option(name: .shortAndLong, help: "The archive to write (replaced atomically).")
    var output: String

    @Option(help: "zstd compression level (1-19).")
    var level: Int32 = 3

    @Option(name: .customLong("workflow-id"), help: "Correlation id for the audit log (default: $SANDBOXD_WORKFLOW_ID).")
    var workflowID: String?

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func validate() throws {
        guard (1...19).contains(level) else { throw ValidationError("--level \(level): use 1 to 19") }
    }

    func run() throws {
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let s = try SandboxExporter.export(store: StoreCLI.store(), name: name, output: output,
                                               workflow: StoreCLI.workflow(workflowID), level: level)
            for p in s.strippedSetID { CLI.warn("\(p): setuid/setgid bits dropped (they have no effect in a sandbox)") }
            if json {
                print(JSON.object([
                    ("file", .string(s.file)), ("entries", .int(Int64(s.entries))), ("bytes", .int(Int64(clamping: s.bytes))),
                    ("archive_bytes", .int(Int64(clamping: s.archiveBytes))), ("sha256", .string(s.sha256)), ("seconds", .double(s.seconds)),
                ]).rendered())
            } else {
                print("exported \(name) to \(s.file): \(s.entries) entries, \(s.bytes) bytes of files, \(s.archiveBytes) bytes archived in \(String(format2: s.seconds)) s (\(ArchiveCLI.megabytesPerSecond(s.bytes, s.seconds)) MiB/s); sha256 \(s.sha256)")
            }
            return 0
        }
    }
}

extension String {
    init(format2 v: Double) {
        let hundredths = Int((v * 100).rounded())
        let frac = hundredths % 100
        self = "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)"
    }
}
