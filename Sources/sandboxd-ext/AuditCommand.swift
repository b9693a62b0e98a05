import ArgumentParser
import SandboxKit

/// `sandboxd audit verify NAME`, `sandboxd audit show NAME`
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Read and check a named sandbox's audit log.",
        subcommands: [Verify.self, Show.self]
    )

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Check the hash chain of a sandbox's audit log: exit 0 if intact, 1 if a line was edited, removed or reordered."
        )

        @Argument(help: "The sandbox's name.")
        var name: String

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            try StoreCLI.run { () throws(SandboxError) -> Int32 in
                let store = StoreCLI.store()
                let m = try store.load(name)
                let v = try AuditLog(path: store.paths(name).audit).verify(head: (m.auditSeq, m.auditHash))
                if json {
                    print(JSON.object([("sandbox", .string(name)), ("ok", .bool(v.ok)), ("lines", .int(Int64(v.lines))),
                                       ("head", .string(v.head)), ("problems", .array(v.problems.map { .string($0) }))]).rendered())
                } else if v.ok {
                    print("audit log of \(name): \(v.lines) lines, chain intact (head \(v.head.prefix(16)))")
                } else {
                    print("audit log of \(name): TAMPERED")
                    for p in v.problems { print("  \(p)") }
                }
                return v.ok ? 0 : 1
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a sandbox's audit log (JSON lines).")

        @Argument(help: "The sandbox's name.")
        var name: String

        func run() throws {
            try StoreCLI.run { () throws(SandboxError) -> Int32 in
                let store = StoreCLI.store()
                _ = try store.load(name)
                let bytes = try FileSys.read(store.paths(name).audit, limit: 1 << 30) ?? []
                print(String(decoding: bytes, as: UTF8.self), terminator: "")
                return 0
            }
        }
    }
}
