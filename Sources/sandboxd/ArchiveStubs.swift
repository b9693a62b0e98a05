import ArgumentParser

/// `sandboxd export` and `sandboxd import` run in `sandboxd-ext` (see
/// Forward.swift): these stubs only make them appear in `sandboxd --help`.
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
