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
}
