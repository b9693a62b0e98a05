import Testing

@Suite("Launcher: smoke")
struct LauncherSmokeTests {
    @Test("the binaries are built and a sandbox runs a command")
    func runsACommand() async throws {
        try await withSbxTemp { dir in
            let r = await SbxExec(workdir: dir.path).probe("getpid")
            #expect(r.exitCode == 0, "\(r)")
            #expect(r.line == "PID 2 PPID 1", "\(r)")
        }
    }

    /// `check` runs its sandbox through the library's default teardown, which
    /// releases everything before `run` returns: no polling here, unlike after
    /// `exec`, whose janitor releases the sandbox just after it returns.
    @Test("`sandboxd check` runs a test sandbox and leaves no cgroup behind when it returns")
    func checkLaunches() async throws {
        let r = await sbxRun([Sbx.sandboxd, "check"])
        #expect(r.stdout.contains("ok      test sandbox: /bin/true ran in profile worker"), "\(r)")
        #expect(SbxHost.cgroupDirs(named: "sandboxd-check-\(r.pid)").isEmpty)
    }
}
