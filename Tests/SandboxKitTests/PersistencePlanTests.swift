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
            #expect(usr.data == "/state/root/upper/usr\n/state/root/work/usr")
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
}
