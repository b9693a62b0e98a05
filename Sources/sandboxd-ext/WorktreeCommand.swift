import ArgumentParser
import Glibc
import SandboxExt

/// `sandboxd worktree ...`: the per-worker worktrees of central repositories.
struct WorktreeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worktree",
        abstract: "Manage workers' worktrees (one directory and branch sandboxd/NAME per worker).",
        discussion: "Worktrees live in sandboxd's state directory ($SANDBOXD_HOME), never inside the repository.",
        subcommands: [Add.self, List.self, Remove.self, Prune.self]
    )

    static func infoJSON(_ i: WorktreeInfo, _ st: WorktreeStatus?) -> JSON {
        var members: [(String, JSON)] = [
            ("worker", .string(i.worker)), ("repoID", .string(i.repoID)), ("repo", .string(i.centralGitDir)),
            ("repoWorkdir", .str(i.centralWorkdir)), ("path", .string(i.path)), ("gitDir", .string(i.gitDir)),
            ("commonDir", .string(i.commonDir)), ("objectsDir", .string(i.objectsDir)),
            ("centralObjectsDir", .string(i.centralObjectsDir)), ("registrationDir", .string(i.registrationDir)),
            ("metadata", .string(i.metadataPath)), ("branch", .string(i.branch)), ("base", .string(i.base)),
            ("passed", .str(i.passed)), ("created", .int(i.created)),
            ("mounts", .array(i.mounts.map {
                .object([("source", .string($0.source)), ("target", .string($0.target)),
                         ("readOnly", .bool($0.readOnly)), ("purpose", .string($0.purpose))])
            })),
        ]
        if let st {
            members.append(("status", .object([
                ("head", .str(st.head)), ("unpassedCommits", .int(Int64(st.unpassedCommits))),
                ("uncommitted", .array(st.uncommitted.map { .string($0) })), ("missing", .bool(st.missing)),
                ("problem", .str(st.problem)), ("summary", .string(st.summary)),
            ])))
        }
        return .object(members)
    }

    /// `sandboxd worktree add NAME --repo R [--base REF]`
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Provision (or reuse) the worktree of a worker on branch sandboxd/NAME, and print what to mount."
        )

        @Argument(help: "The worker name.")
        var name: String

        @Option(help: "The central repository (a path inside it).")
        var repo: String = "."

        @Option(help: "The commit to start from (default: the repository's HEAD).")
        var base: String?

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            try WorkspaceCLI.run {
                let info = try Workspace.provision(repo: repo, worker: name, base: base)
                if json {
                    print(WorktreeCommand.infoJSON(info, nil).rendered(pretty: true))
                } else {
                    print("worktree \(info.worker): \(info.path) on \(info.branch) from \(info.base.prefix(12))")
                    for m in info.mounts { print("  mount \(m)") }
                }
                return 0
            }
        }
    }

    /// `sandboxd worktree list [--repo R] [--json]`
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List worktrees (of one repository, or of all) with what they hold that has not passed the gate."
        )

        @Option(help: "Only this repository's worktrees.")
        var repo: String?

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            try WorkspaceCLI.run {
                let infos = try Workspace.list(repo: repo)
                let all = infos.map { ($0, Workspace.status($0)) }
                if json {
                    print(JSON.array(all.map { WorktreeCommand.infoJSON($0.0, $0.1) }).rendered(pretty: true))
                } else if all.isEmpty {
                    print("no worktrees")
                } else {
                    var rows = [["WORKER", "REPOSITORY", "PATH", "BASE", "PASSED", "STATUS"]]
                    for (i, st) in all {
                        rows.append([i.worker, i.centralWorkdir ?? i.centralGitDir, i.path, String(i.base.prefix(12)),
                                     i.passed.map { String($0.prefix(12)) } ?? "-", st.summary])
                    }
                    print(WorkspaceCLI.table(rows), terminator: "")
                }
                return 0
            }
        }
    }

    /// `sandboxd worktree rm NAME --repo R [--force]`
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Remove a worker's worktree. Refuses (exit 1) if it holds work that has not passed the gate, unless --force."
        )

        @Argument(help: "The worker name.")
        var name: String

        @Option(help: "The central repository (a path inside it).")
        var repo: String = "."

        @Flag(help: "Remove even if it holds commits or changes that have not passed the gate (they are lost).")
        var force = false

        func run() throws {
            try WorkspaceCLI.run {
                let r = try Workspace.remove(repo: repo, worker: name, force: force)
                var line = "removed worktree \(r.worker) (\(r.path))"
                if r.discarded.hasUnpassedWork { line += "; discarded \(r.discarded.summary)" }
                line += r.branchKept ? "; kept \(r.branch) (it holds passed work)" : "; deleted \(r.branch)"
                print(line)
                return 0
            }
        }
    }

    /// `sandboxd worktree prune --repo R [--force]`
    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prune",
            abstract: "Remove a repository's worktrees that hold nothing unpassed and whose worker holds no live lock.",
            discussion: "Worktrees holding unpassed work are kept and listed, and the exit code is 1; --force removes them too."
        )

        @Option(help: "The central repository (a path inside it).")
        var repo: String = "."

        @Flag(help: "Remove every worktree of the repository, discarding work that has not passed the gate.")
        var force = false

        func run() throws {
            try WorkspaceCLI.run {
                let r = try Workspace.prune(repo: repo, force: force)
                for rm in r.removed {
                    var line = "removed \(rm.worker) (\(rm.path))"
                    if rm.discarded.hasUnpassedWork { line += "; discarded \(rm.discarded.summary)" }
                    print(line)
                }
                for k in r.kept {
                    WorkspaceCLI.fail("kept \(k.worker): \(k.reason); gate it, or use --force to discard it")
                }
                if r.removed.isEmpty && r.kept.isEmpty { print("nothing to prune") }
                return r.kept.isEmpty ? 0 : 1
            }
        }
    }
}
