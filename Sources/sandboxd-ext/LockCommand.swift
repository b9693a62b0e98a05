import ArgumentParser
import Glibc
import SandboxExt

/// Shared by `lock`, `gate` and `worktree`: run a body, turning a SandboxError into its message on
/// stderr and its exit code.
enum WorkspaceCLI {
    static func fail(_ message: String) {
        let line = "sandboxd: \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    }

    static func run(_ body: () throws -> Int32) throws {
        let code: Int32
        do {
            code = try body()
        } catch let conflict as LockConflict {
            fail(conflict.description)
            throw ArgumentParser.ExitCode(conflict.sandboxError.exitCode)
        } catch let e as SandboxError {
            fail(e.message)
            throw ArgumentParser.ExitCode(e.exitCode)
        }
        if code != 0 { throw ArgumentParser.ExitCode(code) }
    }

    static func date(_ t: Int64) -> String {
        if t == 0 { return "never" }
        var tt = time_t(t)
        var tmv = tm()
        gmtime_r(&tt, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        return buf.withUnsafeMutableBufferPointer { b in
            _ = strftime(b.baseAddress!, b.count, "%Y-%m-%dT%H:%M:%SZ", &tmv)
            return String(cString: b.baseAddress!)
        }
    }

    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        var widths = [Int](repeating: 0, count: first.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in
                i + 1 == r.count ? c : c + String(repeating: " ", count: widths[i] - c.count + 2)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }

    static func claimJSON(_ c: LockClaim, now: Int64) -> JSON {
        .object([
            ("worker", .string(c.worker)), ("pattern", .string(c.pattern)), ("host", .string(c.host)),
            ("pid", .int(Int64(c.pid))), ("acquired", .int(c.acquired)), ("expires", .int(c.expires)),
            ("expired", .bool(c.isExpired(now: now))), ("file", .string("locks/" + c.fileName)),
        ])
    }
}

/// `sandboxd lock ...`: path claims on a repository, shared through `refs/sandboxd/locks`.
struct LockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Claim paths of a repository so that two workers never edit the same files.",
        discussion: """
            A claim is a path or glob relative to the repository root: `Sources/Auth/**`, `README.md`, `*.md`
            (`*` within a segment, `**` across segments). Two claims conflict when some path could match both.
            Claims are commits on refs/sandboxd/locks of the repository; see docs/WORKSPACES.md.
            """,
        subcommands: [Acquire.self, Release.self, List.self, GC.self]
    )

    struct Common: ParsableArguments {
        @Option(help: "The central repository (a path inside it).")
        var repo: String = "."

        @Option(help: "Share locks through this remote: fetch its lock ref before, push (fast-forward only) after each change.")
        var remote: String?
    }

    /// `sandboxd lock acquire --repo R --worker W [--lease S] [--wait S] PATTERN...`
    struct Acquire: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "acquire",
            abstract: "Claim paths for a worker, all or nothing. Exit 75 when another worker holds an overlapping claim."
        )

        @OptionGroup var common: Common

        @Option(help: "The worker claiming the paths.")
        var worker: String

        @Option(help: "Seconds the claim lasts unless renewed; after that `lock gc` may release it once the holder process is gone. 0: no expiry.")
        var lease: Int64 = LockStore.defaultLease

        @Option(help: "On a conflict, keep retrying (with backoff) for up to this many seconds instead of failing at once.")
        var wait: Double = 0

        @Option(help: "The holder process whose death (with an expired lease) frees the claim. Default: the parent of this command.")
        var pid: Int32?

        @Flag(help: "Print the claims granted as JSON.")
        var json = false

        @Argument(help: "Paths or globs relative to the repository root.")
        var patterns: [String]

        func run() throws {
            try WorkspaceCLI.run {
                let store = try LockStore(repo: common.repo, remote: common.remote)
                let granted = try store.acquire(worker: worker, patterns: patterns, lease: lease, wait: wait,
                                                pid: pid ?? getppid())
                let now = Int64(time(nil))
                if json {
                    print(JSON.array(granted.map { WorkspaceCLI.claimJSON($0, now: now) }).rendered(pretty: true))
                } else {
                    let until = granted.first.map { $0.expires == 0 ? "no expiry" : "lease until \(WorkspaceCLI.date($0.expires))" } ?? ""
                    print("\(worker) holds \(granted.map(\.pattern).joined(separator: ", ")) (\(until))")
                }
                return 0
            }
        }
    }

    /// `sandboxd lock release --repo R --worker W [PATTERN...]`
    struct Release: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "release",
            abstract: "Release a worker's claims (all of them when no pattern is given)."
        )

        @OptionGroup var common: Common

        @Option(help: "The worker releasing its claims.")
        var worker: String

        @Argument(help: "The claimed patterns to release, as given to acquire.")
        var patterns: [String] = []

        func run() throws {
            try WorkspaceCLI.run {
                let store = try LockStore(repo: common.repo, remote: common.remote)
                let released = try store.release(worker: worker, patterns: patterns)
                if released.isEmpty {
                    WorkspaceCLI.fail("\(worker) held none of \(patterns.isEmpty ? "its claims (it holds none)" : patterns.joined(separator: ", "))")
                } else {
                    print("released \(released.map(\.pattern).joined(separator: ", ")) of \(worker)")
                }
                return 0
            }
        }
    }

    /// `sandboxd lock list --repo R [--json]`
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Show who holds which paths.")

        @OptionGroup var common: Common

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            try WorkspaceCLI.run {
                let store = try LockStore(repo: common.repo, remote: common.remote)
                let claims = try store.list()
                let now = Int64(time(nil))
                if json {
                    print(JSON.object([
                        ("ref", .string(LockStore.ref)), ("repo", .string(store.gitDir)),
                        ("locks", .array(claims.map { WorkspaceCLI.claimJSON($0, now: now) })),
                    ]).rendered(pretty: true))
                } else if claims.isEmpty {
                    print("no locks")
                } else {
                    var rows = [["WORKER", "PATTERN", "HOST", "PID", "EXPIRES"]]
                    for c in claims {
                        let exp = c.expires == 0 ? "never" : WorkspaceCLI.date(c.expires) + (c.isExpired(now: now) ? " (expired)" : "")
                        rows.append([c.worker, c.pattern, c.host, String(c.pid), exp])
                    }
                    print(WorkspaceCLI.table(rows), terminator: "")
                }
                return 0
            }
        }
    }

    /// `sandboxd lock gc --repo R`
    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Release claims whose lease expired and whose holder is gone (same host: pid not alive; other host: lease alone)."
        )

        @OptionGroup var common: Common

        func run() throws {
            try WorkspaceCLI.run {
                let store = try LockStore(repo: common.repo, remote: common.remote)
                let released = try store.gc()
                if released.isEmpty {
                    print("nothing to release")
                } else {
                    for c in released {
                        print("released \(c.worker): \(c.pattern) (lease expired \(WorkspaceCLI.date(c.expires)); host \(c.host), pid \(c.pid))")
                    }
                }
                return 0
            }
        }
    }
}
