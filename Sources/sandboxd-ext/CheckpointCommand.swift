import ArgumentParser
import SandboxExt

/// `sandboxd checkpoint NAME [--label L]`
struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Save a named sandbox's root changes, HOME and workdir (and a worker's git directory); `sandboxd rewind` restores them.",
        discussion: "Files are reflinked where the file system allows (btrfs, XFS), copied otherwise."
    )

    @Argument(help: "The sandbox's name.")
    var name: String

    @Option(help: "A label to rewind to instead of the checkpoint's number.")
    var label: String?

    @OptionGroup var workflow: WorkflowOption

    @Flag(help: "Print the checkpoint as JSON.")
    var json = false

    func run() throws {
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let wf = StoreCLI.workflow(workflow.workflowID)
            let session = try SandboxSession.open(store: StoreCLI.store(), name: name, operation: "checkpoint", workflow: wf)
            let cp = try session.checkpoint(label: label, workflow: wf)
            if json {
                print(cp.json.rendered())
            } else {
                print("checkpoint \(cp.id)\(cp.label.map { " (\($0))" } ?? "") of \(name): \(cp.files) files, \(StoreCLI.bytes(cp.bytes))\(cp.reflinked > 0 ? ", \(cp.reflinked) reflinked" : "")")
            }
            return 0
        }
    }
}

/// `sandboxd checkpoints NAME [--json]`
struct CheckpointsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "checkpoints", abstract: "List a named sandbox's checkpoints.")

    @Argument(help: "The sandbox's name.")
    var name: String

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let cps = try StoreCLI.store().checkpoints(name)
            if json {
                print(JSON.array(cps.map(\.json)).rendered())
            } else if cps.isEmpty {
                print("no checkpoints of \(name)")
            } else {
                var rows = [["ID", "LABEL", "CREATED", "FILES", "SIZE"]]
                for c in cps { rows.append([String(c.id), c.label ?? "-", c.created, String(c.files), StoreCLI.bytes(c.bytes)]) }
                print(ProfileCLI.columns(rows), terminator: "")
            }
            return 0
        }
    }
}

/// `sandboxd rewind NAME CHECKPOINT`
struct RewindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rewind",
        abstract: "Restore a named sandbox's root changes, HOME and workdir exactly as a checkpoint saved them.",
        discussion: """
            A worker's sandbox also gets its commits, branch tip, HEAD and index back. Refused when the checkpoint \
            is older than work that has since passed the gate. Plan, results and the audit log are not rewound. \
            The checkpoint is kept.
            """
    )

    @Argument(help: "The sandbox's name.")
    var name: String

    @Argument(help: "A checkpoint number or label (see `sandboxd checkpoints NAME`).")
    var checkpoint: String

    @OptionGroup var workflow: WorkflowOption

    func run() throws {
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let wf = StoreCLI.workflow(workflow.workflowID)
            let store = StoreCLI.store()
            let session = try SandboxSession.open(store: store, name: name, operation: "rewind", workflow: wf)
            let repository = session.manifest.repository
            let cp = try session.rewind(to: checkpoint, workflow: wf) { (cp, dir) throws(SandboxError) in
                if let repository {
                    try WorkerGitState.checkRewind(sandbox: name, repository: repository, checkpoint: cp, directory: dir, stateDir: store.root)
                }
            }
            print("rewound \(name) to checkpoint \(cp.id)\(cp.label.map { " (\($0))" } ?? "") of \(cp.created)")
            return 0
        }
    }
}
