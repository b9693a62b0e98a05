/// Compiled seccomp programs, per policy, for this process.
///
/// Compiling Docker's allow-list with libseccomp costs about a millisecond;
/// a process launches one sandbox, so an in-memory cache is what helps tests
/// and embedders that launch many. (An on-disk cache was considered and left
/// out: see docs/DESIGN.md, "Startup".)
public final class SeccompCache: @unchecked Sendable {
    public static let shared = SeccompCache()
    private var programs: [SeccompPolicy: [SeccompProgram]] = [:]
    private let lock = Mutex()

    public func programs(for policy: SeccompPolicy) throws(SandboxError) -> [SeccompProgram] {
        if let p = lock.withLock({ programs[policy] }) { return p }
        let compiled = try SeccompCompiler.compile(policy)
        lock.withLock { programs[policy] = compiled }
        return compiled
    }
}
