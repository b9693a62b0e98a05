import Foundation
import Glibc
import Testing

/// Root drops to `nobody` for these tests (scripts/test installs util-linux's setpriv).
let canDropToNobody = geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0

/// sandboxd run by an ordinary user (`nobody`, through setpriv): it cannot
/// clone the host's mounts, make idmapped mounts or (without a delegated
/// cgroup) cgroups, so binds are made inside the sandbox's own namespace and
/// a profile with cgroup limits is refused.
@Suite("Unprivileged sandboxd", .serialized, .enabled(if: canDropToNobody))
struct UnprivilegedTests {
    static let setpriv = "/usr/bin/setpriv"
    static let user: uid_t = 65534

    /// A scratch directory owned by `nobody`, with a profile that sets no cgroup limits.
    struct Scratch {
        let temp: SbxTemp
        var path: String { temp.path }
        var profile: String { path + "/nolimits.toml" }

        init() throws {
            temp = try SbxTemp("unpriv")
            try temp.mkdir("w")
            try temp.write("nolimits.toml", """
                extends = "worker"
                description = "worker without cgroup limits (no delegated cgroup for an ordinary user)"
                [limits]
                memory = 0
                pids = 0
                """)
            for p in [path, path + "/w", profile] { chown(p, UnprivilegedTests.user, UnprivilegedTests.user) }
            // The state is reached through an absolute symlink, as a $HOME often is:
            // an unprivileged sandbox resolves its binds and layers under /oldroot.
            try temp.symlink("via", to: path)
        }

        /// `sandboxd ARGS...` as `nobody`, from `w/`, with the state under this directory.
        func run(_ args: [String]) async -> SbxRun {
            var spawn = SbxSpawn()
            spawn.environment["HOME"] = path + "/via"
            spawn.environment["SANDBOXD_HOME"] = path + "/via/state"
            spawn.environment["SANDBOXD_CACHE"] = path + "/cache"
            spawn.cwd = path + "/w"
            spawn.timeout = 60
            let drop = [UnprivilegedTests.setpriv, "--reuid=\(UnprivilegedTests.user)", "--regid=\(UnprivilegedTests.user)", "--clear-groups"]
            return await sbxRun(drop + [Sbx.sandboxd] + args, spawn)
        }
    }

    @Test("an ordinary user's sandbox: binds, masks and the workdir's owner")
    func throwawaySandbox() async throws {
        let s = try Scratch()
        defer { s.temp.remove() }
        let r = await s.run(["exec", "--no-tty", "--profile", s.profile, "--", "/bin/sh", "-c",
                             "id -u; wc -c < /etc/shadow; test -r /usr/bin/env && echo usr-ok; echo x > out; mount -t tmpfs t /tmp 2>/dev/null || echo no-mount"])
        #expect(r.exitCode == 0, "\(r)")
        #expect(r.stdout.split(separator: "\n") == ["0", "0", "usr-ok", "no-mount"], "\(r)")
        var st = stat()
        #expect(stat(s.path + "/w/out", &st) == 0 && st.st_uid == Self.user, "files written keep the caller's uid")
    }

    @Test("with cgroup limits and no delegated cgroup, an ordinary user is refused with what to do")
    func limitsNeedACgroup() async throws {
        let s = try Scratch()
        defer { s.temp.remove() }
        let r = await s.run(["exec", "--no-tty", "--", "/bin/true"])
        #expect(r.exitCode == 125, "\(r)")
        #expect(r.stderr.contains("cgroup") && r.stderr.contains("delegated cgroup"), "\(r)")
    }

    /// A named sandbox of an ordinary user keeps HOME, results and its
    /// workdir; its root changes go only where the host lets that user write
    /// (host files are owned by ids its namespace cannot map).
    @Test("an ordinary user's named sandbox hands HOME, results and workdir over")
    func namedSandbox() async throws {
        let s = try Scratch()
        defer { s.temp.remove() }
        let created = await s.run(["create", "box", "--profile", s.profile])
        #expect(created.exitCode == 0, "\(created)")
        let first = await s.run(["exec", "--no-tty", "box", "--", "/bin/sh", "-c",
                                 "echo home > \"$HOME/h\"; echo result > \"$SANDBOXD_RESULTS/r\"; echo work > w.txt; touch /usr/local/sbx-x 2>/dev/null || echo root-refused"])
        #expect(first.exitCode == 0, "\(first)")
        #expect(first.stdout == "root-refused\n", "\(first)")
        let second = await s.run(["exec", "--no-tty", "box", "--", "/bin/sh", "-c", "cat \"$HOME/h\" \"$SANDBOXD_RESULTS/r\" w.txt"])
        #expect(second.exitCode == 0, "\(second)")
        #expect(second.stdout == "home\nresult\nwork\n", "\(second)")
        let inspect = await s.run(["inspect", "box", "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
        #expect(json?["status"] as? String == "idle", "\(inspect)")
        #expect(json?["run_count"] as? Int == 2, "\(inspect)")
        let verify = await s.run(["audit", "verify", "box"])
        #expect(verify.exitCode == 0, "\(verify)")
    }
}
