import CSandbox
import CSeccomp
import Glibc

/// A compiled seccomp program: classic BPF instructions, 8 bytes each,
/// exactly as `seccomp(SECCOMP_SET_MODE_FILTER)` takes them.
public struct SeccompProgram: Sendable, Equatable {
    public var bytes: [UInt8]
    public var instructionCount: Int { bytes.count / 8 }
}

extension SeccompProgram {
    /// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
    static let maxInstructions = 4096

    /// `first`, whose every "allow" verdict becomes a jump to the start of
    /// `second`: one program whose verdict is the one the kernel would reach
    /// with `second` loaded first and `first` after it (a verdict of `first`
    /// other than allow stands; otherwise `second` decides). That holds while
    /// `second` never answers more strictly than `first` where `first` denies:
    /// here `first` (the argument checks) answers EPERM where `second` allows
    /// or answers EPERM too, and both kill a foreign ABI first (SeccompTests
    /// checks it call by call). Each "return allow" is replaced by an
    /// unconditional jump of the same size, so no other jump of `first`
    /// moves. nil if a return takes its value from a register (not
    /// libseccomp's output) or the sum is too long.
    static func chain(_ first: SeccompProgram, then second: SeccompProgram) -> SeccompProgram? {
        let n = first.instructionCount
        guard n > 0, n + second.instructionCount <= maxInstructions else { return nil }
        var bytes = first.bytes
        for i in 0..<n {
            // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k, in host order.
            let code = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 8, as: UInt16.self) }
            guard code & 0x07 == 0x06 else { continue }     // BPF_RET
            guard code & 0x18 == 0x00 else { return nil }   // BPF_K: a constant verdict
            let k = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 8 + 4, as: UInt32.self) }
            guard k == SeccompCompiler.actAllow else { continue }
            let jump = (code: UInt16(0x05), jt: UInt8(0), jf: UInt8(0), k: UInt32(n - i - 1)) // BPF_JMP|BPF_JA
            bytes.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: jump.code, toByteOffset: i * 8, as: UInt16.self)
                raw.storeBytes(of: jump.jt, toByteOffset: i * 8 + 2, as: UInt8.self)
                raw.storeBytes(of: jump.jf, toByteOffset: i * 8 + 3, as: UInt8.self)
                raw.storeBytes(of: jump.k, toByteOffset: i * 8 + 4, as: UInt32.self)
            }
        }
        return SeccompProgram(bytes: bytes + second.bytes)
    }
}

/// Compiles a `SeccompPolicy` to BPF with libseccomp, in the parent, so the
/// child only has to load it (`seccomp_export_bpf`).
public enum SeccompCompiler {
    // libseccomp's action macros are not importable; their values are ABI.
    static let actAllow: UInt32 = 0x7fff_0000
    static let actKillProcess: UInt32 = 0x8000_0000
    static func actErrno(_ e: Int32) -> UInt32 { 0x0005_0000 | (UInt32(e) & 0xffff) }

    /// libseccomp lets an unconditional allow swallow a conditional deny of
    /// the same syscall, so argument checks (namespace flags of clone,
    /// terminal-injection ioctls, setuid bits) are compiled as a second
    /// program whose default is allow. The two are chained into one (see
    /// `SeccompProgram.chain`): the kernel then attaches, JIT-compiles and
    /// runs one filter instead of two. Should a chain not fit, both are loaded.
    public static func compile(_ policy: SeccompPolicy) throws(SandboxError) -> [SeccompProgram] {
        let syscalls = try compileSyscalls(policy), arguments = try compileArguments(policy)
        if let one = SeccompProgram.chain(arguments, then: syscalls) { return [one] }
        return [syscalls, arguments]
    }

    /// The allow-list: unknown syscalls ENOSYS, refused ones EPERM.
    static func compileSyscalls(_ policy: SeccompPolicy) throws(SandboxError) -> SeccompProgram {
        let ctx = try makeContext(defaultAction: actErrno(ENOSYS))
        defer { seccomp_release(ctx) }
        for name in policy.allow.sorted() where !policy.deny.contains(name) {
            try add(ctx, name, actAllow, [])
        }
        for name in policy.deny.sorted() {
            try add(ctx, name, actErrno(EPERM), [])
        }
        for name in ["clone", "ioctl"] where !policy.deny.contains(name) {
            try add(ctx, name, actAllow, [])
        }
        // clone3 is deliberately in neither list: it hides its flags in memory
        // where BPF cannot look, so it gets the default ENOSYS and libc falls back to clone.
        if !policy.deny.contains("personality") {
            for v in SeccompPolicy.personalities {
                try add(ctx, "personality", actAllow, [cmp(0, SCMP_CMP_EQ, v, 0)])
            }
        }
        return try export(ctx)
    }

    /// Argument checks: clone with a namespace flag; TIOCSTI/TIOCLINUX matched
    /// on the low 32 bits of the request (so high-bit variants are caught);
    /// setuid/setgid mode bits. (openat2 carries its mode in memory BPF cannot
    /// read: it is left out of the allow-list, answers ENOSYS, and libc falls back to openat.)
    static func compileArguments(_ policy: SeccompPolicy) throws(SandboxError) -> SeccompProgram {
        let ctx = try makeContext(defaultAction: actAllow)
        defer { seccomp_release(ctx) }
        for flag in SeccompPolicy.namespaceCloneFlags {
            try add(ctx, "clone", actErrno(EPERM), [cmp(0, SCMP_CMP_MASKED_EQ, flag, flag)])
        }
        for req in SeccompPolicy.refusedIoctls {
            try add(ctx, "ioctl", actErrno(EPERM), [cmp(1, SCMP_CMP_MASKED_EQ, 0xffff_ffff, req)])
        }
        // No setuid/setgid files: refuse the bits in every call that sets a mode.
        for (name, modeArg, flagsArg) in SeccompPolicy.modeArguments {
            for bit in SeccompPolicy.refusedModeBits {
                let mode = cmp(modeArg, SCMP_CMP_MASKED_EQ, bit, bit)
                if let flagsArg {
                    // open's mode is garbage unless it creates: both conditions must hold.
                    for create in SeccompPolicy.openCreateFlags {
                        try add(ctx, name, actErrno(EPERM), [cmp(flagsArg, SCMP_CMP_MASKED_EQ, create, create), mode])
                    }
                } else {
                    try add(ctx, name, actErrno(EPERM), [mode])
                }
            }
        }
        return try export(ctx)
    }

    private static func makeContext(defaultAction: UInt32) throws(SandboxError) -> scmp_filter_ctx {
        guard let ctx = seccomp_init(defaultAction) else {
            throw SandboxError("seccomp: seccomp_init failed; is libseccomp installed (apt-get install libseccomp2)?")
        }
        do {
            // Only the native ABI: ia32 (int 0x80) and x32 calls hit the bad-arch action and die.
            try check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, actKillProcess), "set the bad-arch action")
            // The child sets no_new_privs itself, explicitly, before loading.
            try check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "clear CTL_NNP")
            // A binary tree of syscall numbers instead of a linear chain: ~9 comparisons
            // instead of up to ~300 for a syscall the kernel's action cache does not cover.
            try check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2), "select the binary-tree layout")
        } catch {
            seccomp_release(ctx)
            throw error
        }
        return ctx
    }

    private static func cmp(_ arg: UInt32, _ op: scmp_compare, _ a: UInt64, _ b: UInt64) -> scmp_arg_cmp {
        scmp_arg_cmp(arg: arg, op: op, datum_a: a, datum_b: b)
    }

    private static func add(_ ctx: scmp_filter_ctx, _ name: String, _ action: UInt32, _ conds: [scmp_arg_cmp]) throws(SandboxError) {
        let nr = seccomp_syscall_resolve_name(name)
        // A name this architecture does not have (e.g. a 32-bit-only call) is skipped.
        if nr == __NR_SCMP_ERROR { return }
        let rc = conds.withUnsafeBufferPointer { buf in
            seccomp_rule_add_array(ctx, action, nr, UInt32(buf.count), buf.baseAddress)
        }
        // -EEXIST: an identical rule is already there (e.g. listed twice); harmless.
        if rc < 0 && rc != -EEXIST {
            throw SandboxError("seccomp: cannot add a rule for '\(name)': \(String(cString: strerror(-rc)))")
        }
    }

    private static func check(_ rc: Int32, _ what: String) throws(SandboxError) {
        if rc < 0 { throw SandboxError("seccomp: cannot \(what): \(String(cString: strerror(-rc)))") }
    }

    /// `seccomp_export_bpf` writes to a descriptor: give it a memfd and read it back.
    private static func export(_ ctx: scmp_filter_ctx) throws(SandboxError) -> SeccompProgram {
        let fd = sbx_memfd("sandboxd-seccomp")
        guard fd >= 0 else { throw SandboxError("seccomp: memfd_create failed: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try check(seccomp_export_bpf(ctx, fd), "export the BPF program")
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0, size % 8 == 0 else { throw SandboxError("seccomp: exported program has a bad size (\(size))") }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(size), 0) }
        guard n == size else { throw SandboxError("seccomp: short read of the exported program") }
        return SeccompProgram(bytes: bytes)
    }
}
