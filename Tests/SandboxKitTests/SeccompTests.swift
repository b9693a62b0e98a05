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

    @Test func compilesTwoProgramsWithTheArgumentChecks() throws {
        let programs = try SeccompCompiler.compile(SeccompPolicy.forProfile(.init()))
        #expect(programs.count == 2)
        #expect(programs[0].instructionCount > 100, "the allow-list program is long")
        #expect(programs.allSatisfy { $0.bytes.count % 8 == 0 })
        // The argument program compares ioctl's request with TIOCSTI and TIOCLINUX.
        let ks = constants(programs[1])
        #expect(ks.contains(0x5412) && ks.contains(0x541C))
        #expect(ks.contains(0x1000_0000), "CLONE_NEWUSER")
        // Both check the architecture first: x86_64's AUDIT_ARCH value.
        #expect(constants(programs[0]).contains(0xC000_003E))
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
            let other = cacheDir + "/seccomp-fedcba9876543210.bpf"
            try Data("sandboxd-seccomp 5|build someotherbuild|libseccomp 2.5.4\n".utf8).write(to: URL(fileURLWithPath: other))
            _ = try SeccompCache(directory: cacheDir).programs(for: .init(deny: ["acct"]))
            #expect(access(dead, F_OK) != 0, "a dead writer's temporary file is removed")
            #expect(access(ours, F_OK) == 0, "a live writer's temporary file is left alone")
            #expect(access(other, F_OK) != 0, "another build's entry is removed")
            let kept = FileSys.list(cacheDir).filter { $0.hasSuffix(".bpf") }
            #expect(kept.count == 1, "this build's new entry stays: \(kept)")
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
