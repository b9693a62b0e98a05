import ArgumentParser
import SandboxKit

/// `sandboxd inspect NAME [--json]`
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a named sandbox: profile, workdir, plan, runs, checkpoints, where its state lives."
    )

    @Argument(help: "The sandbox's name.")
    var name: String

    @Flag(help: "Print JSON: the manifest, plus status, paths, lock holder and checkpoints.")
    var json = false

    static func summary(_ i: SandboxInfo) -> JSON {
        .object([
            ("name", .string(i.manifest.name)), ("status", .string(i.status.rawValue)),
            ("profile", .string(i.manifest.profileName)), ("runs", .int(i.manifest.runCount)),
            ("last_run", i.manifest.lastRun?.json ?? .null), ("created", .string(i.manifest.created)),
            ("path", .string(i.paths.dir)), ("workdir", .string(i.workdir)),
        ])
    }

    func run() throws {
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let store = StoreCLI.store()
            let i = try store.info(name)
            let cps = (try? store.checkpoints(name)) ?? []
            let m = i.manifest
            if json {
                var out = m.json
                out = out.setting("status", .string(i.status.rawValue))
                out = out.setting("state", .object([
                    ("path", .string(i.paths.dir)), ("workdir", .string(i.workdir)), ("home", .string(i.paths.home)),
                    ("root_changes", .string(i.paths.upper)), ("results", .string(i.paths.results)),
                    ("plan", m.plan != nil ? .string(i.paths.plan) : .null), ("audit", .string(i.paths.audit)),
                ]))
                out = out.setting("lock", i.holder.map { h in
                    .object([("pid", .int(Int64(h.pid))), ("operation", .string(h.operation)), ("since", .string(h.since))])
                } ?? .null)
                out = out.setting("checkpoints", .array(cps.map(\.json)))
                print(out.rendered())
                return 0
            }
            var s = "name        \(m.name)\n"
            s += "status      \(i.status.rawValue)"
            if let h = i.holder { s += " (pid \(h.pid), \(h.operation) since \(h.since))" }
            s += "\ncreated     \(m.created)\n"
            s += "profile     \(m.profileName) (from \(m.profileSource))\n"
            s += "workdir     \(i.workdir)\(m.externalWorkdir == nil ? "" : " (host directory)")\n"
            if let r = m.repository { s += "repository  \(r.path) worker \(r.worker) base \(r.base ?? "-")\n" }
            s += "plan        \(m.plan.map { "\(i.paths.plan) sha256 \($0.sha256) (\($0.bytes) bytes)" } ?? "none")\n"
            s += "state       \(i.paths.dir)\n"
            s += "audit       \(m.auditSeq) lines, head \(m.auditHash.prefix(16))\n"
            s += "runs        \(m.runCount)\n"
            for r in m.runs.suffix(10) { s += "  \(StoreCLI.describe(r))\n" }
            s += "checkpoints \(cps.count)\n"
            for c in cps { s += "  \(c.id)\(c.label.map { " \($0)" } ?? "") \(c.created) \(c.files) files, \(StoreCLI.bytes(c.bytes))\n" }
            print(s, terminator: "")
            return 0
        }
    }
}
