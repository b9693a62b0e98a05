import ArgumentParser
import SandboxKit

/// `sandboxd list [--json]`
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List named sandboxes with their status and last run.",
        discussion: "A run whose sandboxd was killed is shown, and recorded, as interrupted."
    )

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try StoreCLI.run { () throws(SandboxError) -> Int32 in
            let store = StoreCLI.store()
            let (all, broken) = store.list()
            if json {
                var items: [JSON] = all.map { InspectCommand.summary($0) }
                items += broken.map { .object([("name", .string($0.0)), ("error", .string($0.1))]) }
                print(JSON.array(items).rendered())
            } else if all.isEmpty && broken.isEmpty {
                print("no sandboxes in \(store.sandboxesDir)")
            } else {
                var rows = [["NAME", "STATUS", "PROFILE", "RUNS", "LAST RUN", "CREATED"]]
                for i in all {
                    let last = i.manifest.lastRun.map { r in "\(r.state.rawValue)\(r.exitCode.map { " \($0)" } ?? "") \(r.end ?? r.start)" } ?? "-"
                    rows.append([i.manifest.name, i.status.rawValue, i.manifest.profileName, String(i.manifest.runCount), last, i.manifest.created])
                }
                for (n, e) in broken { rows.append([n, "BROKEN", "-", "-", e, "-"]) }
                print(ProfileCLI.columns(rows), terminator: "")
            }
            return broken.isEmpty ? 0 : 1
        }
    }
}
