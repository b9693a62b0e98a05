import Foundation
import Glibc
import SandboxKit
import Testing

/// What the persistence tests share: a private `SANDBOXD_HOME` per test,
/// `sandboxd` (and, through it, `sandboxd-ext`) run as separate processes,
/// tree snapshots for exact comparisons, and checks that nothing is left
/// behind (mounts, sandboxd cgroups, processes).
enum Persist {
    static let ext = Sbx.productsDir + "/sandboxd-ext"

    static var missing: String? {
        if let m = Sbx.missingBinaries { return m }
        return access(ext, X_OK) == 0 ? nil : "not built: \(ext)"
    }

    /// The state directory of one test: traversable by the sandboxes' unprivileged root (0755).
    struct Home: Sendable {
        let path: String
        let scratch: SbxTemp

        var sandboxes: String { path + "/sandboxes" }
        func dir(_ name: String) -> String { sandboxes + "/" + name }

        /// `sandboxd ARGS...` with this SANDBOXD_HOME.
        func run(_ args: [String], env: [String: String] = [:], timeout: Double = 120) async -> SbxRun {
            var spawn = SbxSpawn()
            spawn.environment["SANDBOXD_HOME"] = path
            spawn.environment["SANDBOXD_WORKFLOW_ID"] = "wf-it"
            for (k, v) in env { spawn.environment[k] = v }
            spawn.cwd = scratch.path
            spawn.timeout = timeout
            return await sbxRun([Sbx.sandboxd] + args, spawn)
        }

        func run(_ args: String...) async -> SbxRun { await run(args) }

        /// `sandboxd exec NAME --no-tty -- sh -c SCRIPT`.
        func sh(_ name: String, _ script: String, env: [String: String] = [:]) async -> SbxRun {
            await run(["exec", "--no-tty", name, "--", "/bin/sh", "-c", script], env: env)
        }

        func json(_ args: String...) async throws -> Any {
            let r = await run(args)
            guard r.exitCode == 0 else { throw SbxError("\(r)") }
            return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
        }

        /// Waits (up to 10 s) until no process holds a sandbox's lock. An exec
        /// answers before its finisher has torn down the sandbox's mounts and
        /// synced its records; removing the state meanwhile left directories behind.
        func awaitLocks() {
            for name in entries() {
                let fd = open(dir(name) + "/lock", O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
                guard fd >= 0 else { continue }
                defer { close(fd) }
                var tries = 0
                while flock(fd, LOCK_EX | LOCK_NB) != 0 && tries < 10_000 {
                    usleep(1_000)
                    tries += 1
                }
            }
        }

        /// Entries of `sandboxes/` (hidden ones included).
        func entries() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: sandboxes)) ?? []).sorted()
        }
    }

    /// Runs `body` with a fresh state directory, removed afterwards even on failure; then checks
    /// that no mount refers to it and no process names it (a sandboxd, its finisher or a
    /// sandbox's pid 1, which show sandboxd's command line), once finishers have had 5 s.
    static func withHome<T>(_ tag: String, _ body: (Home) async throws -> T) async throws -> T {
        try #require(missing == nil, "\(missing ?? "")")
        let scratch = try SbxTemp("p4-\(tag)")
        let home = Home(path: scratch.path + "/state", scratch: scratch)
        defer {
            home.awaitLocks()
            scratch.remove()
        }
        let result = try await body(home)
        let left = await SbxHost.waitUntilGone(scratch.path, seconds: 5)
        #expect(left.isEmpty, "processes left: \(left.map { "\($0.pid) \($0.cmdline)" })")
        let mounts = SbxHost.mounts().filter { $0.contains(scratch.path) }
        #expect(mounts.isEmpty, "mounts left: \(mounts)")
        return result
    }

    static func hostFileHash(_ path: String) -> String {
        SHA256.hex(of: (try? FileSys.read(path, limit: 1 << 30)) ?? [])
    }
}

/// One file system entry as the tree comparisons see it.
struct PTreeEntry: Equatable, CustomStringConvertible {
    var path: String
    var type: mode_t
    var mode: mode_t
    var uid: uid_t
    var gid: gid_t
    var size: Int
    var mtime: Int
    var mtimeNsec: Int
    var content: String
    var xattrs: [String]
    var description: String {
        "\(path) type \(String(type, radix: 8)) mode \(String(mode, radix: 8)) \(uid):\(gid) size \(size) mtime \(mtime).\(mtimeNsec) \(content) \(xattrs)"
    }
}

enum PTree {
    /// Every entry below `root`, sorted: type, mode, owner, size, mtime (ns), content hash,
    /// link target, device number and carried extended attributes.
    static func snapshot(_ root: String) -> [PTreeEntry] {
        var out: [PTreeEntry] = []
        func walk(_ rel: String) {
            let full = rel.isEmpty ? root : root + "/" + rel
            var st = stat()
            guard lstat(full, &st) == 0 else { return }
            let type = st.st_mode & S_IFMT
            var content = ""
            if type == S_IFREG {
                content = Persist.hostFileHash(full) + " nlink \(st.st_nlink)"
            } else if type == S_IFLNK {
                content = "-> " + (FileSys.readLink(full) ?? "?")
            } else if type == S_IFCHR || type == S_IFBLK {
                content = "rdev \(st.st_rdev)"
            }
            let xattrs = FileSys.xattrNames(full).filter(FileSys.isCarriedXattr).sorted().map { n in
                n + "=" + SHA256.hex(FileSys.xattr(full, n) ?? [])
            }
            out.append(PTreeEntry(path: rel.isEmpty ? "." : rel, type: type, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid,
                                  size: type == S_IFDIR ? 0 : Int(st.st_size), mtime: st.st_mtim.tv_sec, mtimeNsec: st.st_mtim.tv_nsec,
                                  content: content, xattrs: xattrs))
            if type == S_IFDIR {
                for name in FileSys.list(full).sorted() { walk(rel.isEmpty ? name : rel + "/" + name) }
            }
        }
        walk("")
        return out
    }

    /// Differences between two snapshots, one line each (empty when equal).
    static func diff(_ a: [PTreeEntry], _ b: [PTreeEntry]) -> [String] {
        var diffs: [String] = []
        let ma = Dictionary(uniqueKeysWithValues: a.map { ($0.path, $0) })
        let mb = Dictionary(uniqueKeysWithValues: b.map { ($0.path, $0) })
        for (p, e) in ma.sorted(by: { $0.key < $1.key }) {
            guard let f = mb[p] else { diffs.append("only in first: \(e)"); continue }
            if e != f { diffs.append("differs:\n  \(e)\n  \(f)") }
        }
        for (p, f) in mb.sorted(by: { $0.key < $1.key }) where ma[p] == nil { diffs.append("only in second: \(f)") }
        return diffs
    }

    /// The parts of a sandbox an export carries, as snapshots.
    static func sandboxState(_ dir: String) -> [String: [PTreeEntry]] {
        var out: [String: [PTreeEntry]] = [:]
        for area in ["root/upper", "home", "workdir", "results", "plan.md"] { out[area] = snapshot(dir + "/" + area) }
        return out
    }
}
