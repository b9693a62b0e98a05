import CSeccomp
import Foundation
import Glibc
import Testing
@testable import SandboxKit

@Suite("Seccomp")
struct SeccompTests {
    @Test func listsAreDisjointAndConditionalSyscallsAreNotAllowedWhole() {
        #expect(SeccompPolicy.dockerAllow.isDisjoint(with: SeccompPolicy.refused))
        #expect(SeccompPolicy.dockerAllow.isDisjoint(with: SeccompPolicy.conditional))
    }

    @Test(arguments: ["mount", "umount2", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
                      "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
                      "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "open_by_handle_at",
                      "name_to_handle_at", "ptrace", "process_vm_readv", "process_vm_writev"])
    func theIssuesGroupsAreRefused(name: String) {
        #expect(SeccompPolicy.refused.contains(name))
        #expect(seccomp_syscall_resolve_name(name) != __NR_SCMP_ERROR, "\(name) must exist on this architecture")
    }

    @Test func everyAllowedNameIsRealOnSomeArchitecture() {
        // Names this architecture lacks are skipped by the compiler; the core ones must resolve.
        for name in ["read", "write", "openat", "execve", "mmap", "futex", "clock_gettime", "getrandom", "statx", "rseq"] {
            #expect(seccomp_syscall_resolve_name(name) != __NR_SCMP_ERROR, "\(name)")
            #expect(SeccompPolicy.dockerAllow.contains(name))
        }
    }

    @Test func profileAdjustmentsMoveNamesBetweenLists() {
        let p = SeccompPolicy.forProfile(.init(deny: ["personality", "acct", "uname"], allow: ["ptrace", "clone"]))
        #expect(p.deny.contains("uname") && !p.allow.contains("uname"))
        #expect(p.allow.contains("ptrace") && !p.deny.contains("ptrace"))
        #expect(!p.allow.contains("clone"), "clone keeps its argument rules")
        #expect(p.deny.contains("personality"))
    }

    @Test func compilesOneProgramWithTheArgumentChecks() throws {
        let programs = try SeccompCompiler.compile(SeccompPolicy.forProfile(.init()))
        #expect(programs.count == 1, "the argument checks and the allow-list, chained")
        #expect(programs[0].instructionCount > 100, "the allow-list is long")
        #expect(programs.allSatisfy { $0.bytes.count % 8 == 0 })
        let ks = constants(programs[0])
        #expect(ks.contains(0x5412) && ks.contains(0x541C), "TIOCSTI and TIOCLINUX")
        #expect(ks.contains(0x1000_0000), "CLONE_NEWUSER")
        #expect(ks.contains(0xC000_003E), "the architecture check: x86_64's AUDIT_ARCH value")
    }

    /// The chained program answers every call as the kernel answers with the
    /// two programs loaded as separate filters: a classic BPF interpreter runs
    /// both forms over every syscall number, both ABIs and argument values the
    /// checks look at.
    @Test(arguments: [Profile.Seccomp(), Profile.Seccomp(deny: ["ioctl", "personality", "fchmodat"], allow: ["ptrace"])])
    func chainingKeepsEveryVerdict(section: Profile.Seccomp) throws {
        let policy = SeccompPolicy.forProfile(section)
        let syscalls = try SeccompCompiler.compileSyscalls(policy)
        let arguments = try SeccompCompiler.compileArguments(policy)
        let chained = try #require(SeccompProgram.chain(arguments, then: syscalls))
        #expect(chained.instructionCount == syscalls.instructionCount + arguments.instructionCount)
        let values: [UInt64] = [0, 0x1000_0000, 0x2_0000, 0x4000_0000, 0x5412, 0xdead_0000_0000_5412, 0x541C, 0x5413,
                                0o4755, 0o2755, 0o755, 0o100, 0o20000000, 0o100 | 0o2, 0x0008, 0xffff_ffff, .max]
        var rng = SplitMix(seed: 42)
        var compared = 0, denied = 0
        for arch: UInt32 in [0xC000_003E, 0x4000_0003] {
            for nr in Array(0..<460).map(UInt32.init) + [0x4000_0000, 0x4000_0001, 0x4000_0038, 0xffff_ffff] {
                for _ in 0..<24 {
                    let args = (0..<6).map { _ in values[Int(rng.next() % UInt64(values.count))] }
                    let data = seccompData(nr: nr, arch: arch, args: args)
                    // The kernel runs the newest filter (the argument checks) first
                    // and keeps the first of the strictest verdicts.
                    let separate = strictest(try run(arguments, data), try run(syscalls, data))
                    let one = try run(chained, data)
                    #expect(one == separate, "nr \(nr) arch \(String(arch, radix: 16)) args \(args)")
                    if one != separate { return }
                    compared += 1
                    if one != SeccompCompiler.actAllow { denied += 1 }
                }
            }
        }
        #expect(compared == 2 * 464 * 24 && denied > compared / 4, "\(compared) calls, \(denied) not allowed")
    }

    @Test func cacheReturnsTheSamePrograms() throws {
        let section = Profile.Seccomp(deny: ["acct"], allow: ["ptrace"])
        #expect(try SeccompCache.shared.programs(for: section) == SeccompCompiler.compile(SeccompPolicy.forProfile(section)))
        #expect(try SeccompCache.shared.programs(for: .init()) == SeccompCompiler.compile(SeccompPolicy.forProfile(.init())))
    }

    @Test func cacheKeyNamesTheBuildAndTheProfilesAdjustments() {
        // The build ID stands for the built-in lists and the compiler: without
        // it the disk cache would be off (or, worse, keyed too loosely).
        let id = SeccompCache.buildID
        #expect(id != nil && id!.count >= 32 && id!.allSatisfy(\.isHexDigit), "build ID \(id ?? "none")")
        let plain = SeccompCache.key(.init())
        #expect(plain.contains("|build \(id ?? "")|"))
        #expect(SeccompCache.key(.init(deny: ["acct"])) != plain)
        #expect(SeccompCache.key(.init(allow: ["acct"])) != SeccompCache.key(.init(deny: ["acct"])))
    }

    @Test func diskCacheRoundTripsAndDistrustsWhatOthersCanWrite() throws {
        try withTempDir { dir in
            let policy = Profile.Seccomp(deny: ["acct"])
            let compiled = try SeccompCompiler.compile(SeccompPolicy.forProfile(policy))
            let cacheDir = dir + "/cache"
            #expect(try SeccompCache(directory: cacheDir).programs(for: policy) == compiled)
            let file = cacheDir + "/seccomp-\(SeccompCache.fnv1a(SeccompCache.key(policy))).bpf"
            #expect(access(file, R_OK) == 0, "a fresh process's cache writes the file")
            // A fresh cache object (a new process) reads it back.
            #expect(try SeccompCache(directory: cacheDir).programs(for: policy) == compiled)

            // A file whose program was tampered with but whose key matches is only
            // trusted if nobody else could have written it: make it group-writable.
            var bytes = try #require(FileManager.default.contents(atPath: file))
            bytes[bytes.count - 1] ^= 0xff
            try bytes.write(to: URL(fileURLWithPath: file))
            chmod(file, 0o620)
            #expect(try SeccompCache(directory: cacheDir).programs(for: policy) == compiled)
            // A wrong key (another policy's file under this name) is never used.
            chmod(file, 0o600)
            try Data("sandboxd-seccomp 5|other\n1\n12345678".utf8).write(to: URL(fileURLWithPath: file))
            #expect(try SeccompCache(directory: cacheDir).programs(for: policy) == compiled)
            // A directory others can write is not used at all.
            chmod(cacheDir, 0o777)
            #expect(try SeccompCache(directory: cacheDir).programs(for: policy) == compiled)
        }
    }

    @Test func writingAnEntryRemovesTemporaryFilesOfKilledWriters() throws {
        try withTempDir { dir in
            let cacheDir = dir + "/cache"
            mkdir(cacheDir, 0o700)
            // pid_max is at most 2^22: this pid cannot exist. Our own pid's file is being written.
            let dead = cacheDir + "/seccomp-0123456789abcdef.bpf.tmp.9999999"
            let ours = cacheDir + "/seccomp-0123456789abcdef.bpf.tmp.\(getpid())"
            for f in [dead, ours] { try Data("partial".utf8).write(to: URL(fileURLWithPath: f)) }
            // Other builds' entries: one written two hours ago, one just now
            // (another installed sandboxd, used in turn with this one).
            let old = cacheDir + "/seccomp-fedcba9876543210.bpf", recent = cacheDir + "/seccomp-fedcba9876543211.bpf"
            for f in [old, recent] {
                try Data("sandboxd-seccomp 6|build someotherbuild|libseccomp 2.5.4\n".utf8).write(to: URL(fileURLWithPath: f))
            }
            var times = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
            #expect(utimes(old, &times) == 0)
            _ = try SeccompCache(directory: cacheDir).programs(for: .init(deny: ["acct"]))
            #expect(access(dead, F_OK) != 0, "a dead writer's temporary file is removed")
            #expect(access(ours, F_OK) == 0, "a live writer's temporary file is left alone")
            #expect(access(old, F_OK) != 0, "another build's entry an hour old is removed")
            #expect(access(recent, F_OK) == 0, "another build's recent entry stays: the two would evict each other on every launch")
            let kept = FileSys.list(cacheDir).filter { $0.hasSuffix(".bpf") }
            #expect(kept.count == 2, "this build's new entry and the recent one stay: \(kept)")
        }
    }

    /// The seccomp_data the kernel hands a filter: nr, arch, instruction pointer, six arguments.
    private func seccompData(nr: UInt32, arch: UInt32, args: [UInt64]) -> [UInt8] {
        var d = [UInt8](repeating: 0, count: 64)
        d.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: nr, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: arch, toByteOffset: 4, as: UInt32.self)
            for (i, a) in args.enumerated() { raw.storeBytes(of: a, toByteOffset: 16 + 8 * i, as: UInt64.self) }
        }
        return d
    }

    /// Of two verdicts (the newest filter's first), the kernel keeps the one
    /// whose action, as a signed number, is smallest; the first on a tie.
    private func strictest(_ newest: UInt32, _ older: UInt32) -> UInt32 {
        Int32(bitPattern: older & 0xffff_0000) < Int32(bitPattern: newest & 0xffff_0000) ? older : newest
    }

    struct UnknownInstruction: Error { var code: UInt16 }

    /// Classic BPF as seccomp runs it, for the instructions libseccomp emits;
    /// anything else fails the test rather than being guessed at.
    private func run(_ program: SeccompProgram, _ data: [UInt8]) throws -> UInt32 {
        var a: UInt32 = 0, x: UInt32 = 0, mem = [UInt32](repeating: 0, count: 16), pc = 0
        let n = program.instructionCount
        while pc < n {
            let (code, jt, jf, k) = program.bytes.withUnsafeBytes { raw in
                (raw.loadUnaligned(fromByteOffset: pc * 8, as: UInt16.self), raw[pc * 8 + 2], raw[pc * 8 + 3],
                 raw.loadUnaligned(fromByteOffset: pc * 8 + 4, as: UInt32.self))
            }
            pc += 1
            switch code {
            case 0x20: a = data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: Int(k), as: UInt32.self) } // ld [k]
            case 0x00: a = k                       // ld #k
            case 0x01: x = k                       // ldx #k
            case 0x60: a = mem[Int(k)]             // ld M[k]
            case 0x61: x = mem[Int(k)]             // ldx M[k]
            case 0x02: mem[Int(k)] = a             // st M[k]
            case 0x03: mem[Int(k)] = x             // stx M[k]
            case 0x07: x = a                       // tax
            case 0x87: a = x                       // txa
            case 0x54: a &= k                      // and #k
            case 0x5c: a &= x                      // and x
            case 0x44: a |= k                      // or #k
            case 0x05: pc += Int(k)                // ja
            case 0x15: pc += Int(a == k ? jt : jf) // jeq #k
            case 0x25: pc += Int(a > k ? jt : jf)  // jgt #k
            case 0x35: pc += Int(a >= k ? jt : jf) // jge #k
            case 0x45: pc += Int(a & k != 0 ? jt : jf) // jset #k
            case 0x1d: pc += Int(a == x ? jt : jf) // jeq x
            case 0x2d: pc += Int(a > x ? jt : jf)  // jgt x
            case 0x3d: pc += Int(a >= x ? jt : jf) // jge x
            case 0x06: return k                    // ret #k
            default: throw UnknownInstruction(code: code)
            }
        }
        throw UnknownInstruction(code: 0xffff) // ran off the end: the kernel's checker forbids it
    }

    /// A small deterministic generator for the argument values.
    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// The `k` operands of a classic BPF program.
    func constants(_ p: SeccompProgram) -> Set<UInt32> {
        var out = Set<UInt32>()
        for i in 0..<p.instructionCount {
            let b = p.bytes[(i * 8 + 4)..<(i * 8 + 8)]
            out.insert(b.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) })
        }
        return out
    }
}
