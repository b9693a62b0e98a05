import Foundation
import Glibc
import SandboxKit
import Testing

/// Launches through the library, in this (multi-threaded) test process: the
/// path an embedding orchestrator takes. As root, pid 1 runs in the caller's
/// memory on a mapping of its own that later launches reuse once the kernel
/// has marked it free (launch.c, DESIGN "Pid 1's own memory"); the command
/// line tool makes one launch per process and never gets there.
@Suite("Launcher: in-process launches")
struct InProcessLaunchTests {
    /// One launch of `exit CODE` in the worker profile; its exit code, or -1
    /// with the error.
    static func launch(_ code: Int, workdir: String) -> (Int32, String) {
        let host = HostFacts.current()
        let request = ExecRequest(argv: ["/bin/sh", "-c", "exit \(code)"], workdir: workdir, hostEnvironment: [:],
                                  hostHome: host.home, hostUID: geteuid(), hostGID: getegid())
        do {
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: request)
            let r = try Supervisor().run(plan, cgroupName: "sandboxd-inproc-\(getpid())-\(code)")
            return (r.exitCode, "")
        } catch {
            return (-1, error.message)
        }
    }

    @Test("launches from one process run one after another and at once, each with its own status")
    func sequentialAndConcurrent() async throws {
        try await withSbxTemp("inproc") { dir in
            for code in 10..<14 {
                let (got, why) = Self.launch(code, workdir: dir.path)
                #expect(got == Int32(code), "\(why)")
            }
            let results = LockedResults()
            DispatchQueue.concurrentPerform(iterations: 6) { i in
                results.set(20 + i, Self.launch(20 + i, workdir: dir.path))
            }
            for code in 20..<26 {
                #expect(results.get(code)?.0 == Int32(code), "\(results.get(code)?.1 ?? "no result")")
                #expect(await SbxHost.cgroupsLeft(named: "sandboxd-inproc-\(getpid())-\(code)").isEmpty)
            }
        }
    }
}

/// Results written from concurrentPerform's threads.
final class LockedResults: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: (Int32, String)] = [:]
    func set(_ key: Int, _ value: (Int32, String)) { lock.lock(); values[key] = value; lock.unlock() }
    func get(_ key: Int) -> (Int32, String)? { lock.lock(); defer { lock.unlock() }; return values[key] }
}
