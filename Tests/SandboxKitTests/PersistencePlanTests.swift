import Testing
@testable import SandboxKit

@Suite("Persistence plan")
struct PersistencePlanTests {
    @Test func systemDirectoriesBecomeOverlaysAndStateIsBound() throws {
        try withTempDir { dir in
            var req = ExecRequest(argv: ["/bin/true"], workdir: dir, hostUID: 0, hostGID: 0)
            req.persistence = Persistence(name: "s1", rootChanges: "/state/root", home: "/state/home", plan: "/state/plan.md", results: "/state/results")
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: req)
            let usr = try #require(plan.mounts.first { $0.target == "/usr" })
            #expect(usr.kind == .overlay)
            #expect(usr.source == "/" && usr.data == "/state/root/upper\n/state/root/work/.shared\nusr")
            #expect(plan.mounts.contains { $0.kind == .bind && $0.source == "/state/home" && $0.target == "/home/sandbox" })
            #expect(plan.mounts.contains { $0.source == "/state/plan.md" && $0.target == "/sandbox/plan.md" && $0.readOnly })
            #expect(plan.mounts.contains { $0.source == "/state/results" && $0.target == "/sandbox/results" && !$0.readOnly })
            #expect(plan.environment.contains("SANDBOXD_PLAN=/sandbox/plan.md"))
            #expect(plan.environment.contains("SANDBOXD_RESULTS=/sandbox/results"))
            #expect(plan.ids.hostUID(forInside: 0) == 100_000)
            #expect(plan.ids.hostUID(forInside: 1000) == 101_000)
            #expect(plan.ids.hostUID(forInside: 70_000) == nil)
        }
    }

    /// One overlay of the root filesystem serves the system directories only
    /// when each is a top-level directory on it; otherwise each gets its own.
    @Test func systemDirectoriesShareOneOverlayOnlyOnTheRootFilesystem() throws {
        #expect(Planner.canShareRootOverlay([("/usr", "/usr"), ("/etc", "/etc")]))
        #expect(!Planner.canShareRootOverlay([("/usr", "/usr"), ("/proc", "/proc")]), "/proc is another mount")
        #expect(!Planner.canShareRootOverlay([("/usr/lib", "/usr/lib")]), "not a top-level directory")
        #expect(!Planner.canShareRootOverlay([("/usr", "/opt")]), "bound elsewhere than its own path")
        try withTempDir { dir in
            var profile = Profile(name: "worker")
            profile.filesystem.readOnly = ["/usr", "/proc/self/fdinfo:/fdinfo"]
            var req = ExecRequest(argv: ["/bin/true"], workdir: dir, hostUID: 0, hostGID: 0)
            req.persistence = Persistence(name: "s1", rootChanges: "/state/root", home: "/state/home", plan: nil, results: "/state/results")
            let plan = try Planner().plan(profile: profile, request: req)
            let usr = try #require(plan.mounts.first { $0.target == "/usr" })
            #expect(usr.kind == .overlay && usr.source == "/usr" && usr.data == "/state/root/upper/usr\n/state/root/work/usr\n")
            let other = try #require(plan.mounts.first { $0.target == "/fdinfo" })
            #expect(other.kind == .overlay && other.data == "/state/root/upper/fdinfo\n/state/root/work/fdinfo\n")

            // Unprivileged: never shared (the root mount would come with its locked submounts).
            var unprivileged = ExecRequest(argv: ["/bin/true"], workdir: dir, hostUID: 1000, hostGID: 1000)
            unprivileged.persistence = req.persistence
            let own = try Planner().plan(profile: Profile(name: "worker"), request: unprivileged)
            let overlays = own.mounts.filter { $0.kind == .overlay }
            #expect(!overlays.isEmpty && overlays.allSatisfy { $0.source == $0.target && $0.data?.hasSuffix("\n") == true }, "\(overlays)")
        }
    }

    @Test func aManagedWorkdirSitsAtOnePathInside() throws {
        try withTempDir { dir in
            try FileSys.makeDirectory(dir + "/.git", mode: 0o755)
            try FileSys.makeDirectory(dir + "/.git/hooks", mode: 0o755)
            try writeFileAtomically(dir + "/.env", Array("SECRET=1".utf8))
            var req = ExecRequest(argv: ["/bin/true"], workdir: dir, hostUID: 0, hostGID: 0)
            req.workdirTarget = Persistence.workdirPath
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: req)
            #expect(plan.cwd == "/sandbox/work")
            #expect(plan.environment.contains("PWD=/sandbox/work"))
            #expect(plan.mounts.contains { $0.kind == .bind && $0.source == dir && $0.target == "/sandbox/work" && !$0.readOnly })
            #expect(!plan.mounts.contains { $0.target == dir || $0.target.hasPrefix(dir + "/") }, "nothing is mounted at the host path")
            // The guards and masks follow the workdir to its inside path.
            #expect(plan.mounts.contains { $0.kind == .bind && $0.source == dir + "/.git" && $0.target == "/sandbox/work/.git" })
            #expect(plan.mounts.contains { $0.kind == .readOnly && $0.target == "/sandbox/work/.git/hooks" })
            #expect(plan.mounts.contains { $0.kind == .mask && $0.target == "/sandbox/work/.env" })
        }
    }
}
