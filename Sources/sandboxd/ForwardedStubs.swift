import ArgumentParser

/// Commands that run in `sandboxd-ext` (see Forward.swift): these stubs only
/// make them appear in `sandboxd --help`; `main` forwards before parsing.
struct ExportStub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a named sandbox into one archive (tar + zstd, with a digest): `export NAME -o FILE`."
    )
    func run() throws { Forward.ifNeeded() }
}

struct ImportStub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Create a named sandbox from an archive made by export, after checking it: `import FILE [--name NEW]`."
    )
    func run() throws { Forward.ifNeeded() }
}

struct LockStub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Path locks on refs/sandboxd/locks of a repository: acquire, release, list, gc."
    )
    func run() throws { Forward.ifNeeded() }
}

struct GateStub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gate",
        abstract: "Check a worker's changes against the profile's rules and bring them back if they pass."
    )
    func run() throws { Forward.ifNeeded() }
}

struct WorktreeStub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worktree",
        abstract: "List, remove and prune workers' worktrees."
    )
    func run() throws { Forward.ifNeeded() }
}
