import Foundation
import Glibc
import Testing

/// The syscalls the filter refuses with EPERM, as the probe names them.
let sbxRefusedSyscalls = [
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "open_tree",
    "unshare-user", "unshare-net", "unshare-ns", "setns", "clone-newuser", "clone-newns",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "kexec_load", "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
    "open_by_handle_at", "name_to_handle_at", "ptrace", "ptrace-attach", "process_vm_readv", "process_vm_writev",
    "kcmp", "syslog", "acct", "sethostname",
]

@Suite("Launcher: seccomp")
struct SeccompTests {
    @Test("dangerous syscalls fail with EPERM", arguments: ["worker", "untrusted"], sbxRefusedSyscalls)
    func refused(profile: String, name: String) async throws {
        try await withSbxTemp("seccomp") { dir in
            let r = await SbxExec(workdir: dir.path, profile: profile).probe("syscall", name)
            #expect(r.exitCode == 1 && r.line == "DENIED errno=EPERM", "\(r)")
        }
    }

    /// Control for the matrix above: with the filter's refusal lifted by a
    /// profile, the same probes succeed, so their EPERM really is the filter's.
    /// And a profile's `deny` refuses an ordinary call.
    @Test("a profile's seccomp allow/deny move syscalls in and out of the refused set")
    func profileAdjustments() async throws {
        try await withSbxTemp("seccomp") { dir in
            let profile = try sbxProfile(dir, "adjusted", """
                [seccomp]
                allow = ["kcmp", "keyctl", "name_to_handle_at", "process_vm_readv"]
                deny = ["mkdir"]
                """)
            let sbx = SbxExec(workdir: dir.path, profile: profile)
            for name in ["kcmp", "keyctl", "name_to_handle_at", "process_vm_readv"] {
                let r = await sbx.probe("syscall", name)
                #expect(r.exitCode == 0 && r.line.hasPrefix("OK"), "\(name): \(r)")
            }
            let mk = await sbx.probe("mkdir", "/tmp/d")
            #expect(mk.line == "DENIED errno=EPERM", "\(mk)")
            #expect(await SbxExec(workdir: dir.path).probe("mkdir", "/tmp/d").line == "OK")
        }
    }

    @Test("clone3 fails with ENOSYS (so libcs fall back to clone); plain clone works")
    func clone3() async throws {
        try await withSbxTemp("seccomp") { dir in
            let sbx = SbxExec(workdir: dir.path)
            let r = await sbx.probe("syscall", "clone3")
            #expect(r.line == "DENIED errno=ENOSYS", "\(r)")
            let plain = await sbx.probe("syscall", "clone-plain")
            #expect(plain.exitCode == 0 && plain.line.hasPrefix("OK"), "\(plain)")
        }
    }

    @Test("foreign syscall ABIs kill the process with SIGSYS", arguments: ["int80", "x32"])
    func foreignABI(abi: String) async throws {
        try await withSbxTemp("seccomp") { dir in
            let report = dir.path + "/report.json"
            let r = await SbxExec(workdir: dir.path, flags: ["--json-report", report]).probe(abi)
            #expect(r.exitCode == 128 + SIGSYS, "\(r)")
            #expect(!r.stdout.contains("NOT-KILLED"), "\(r)")
            let json = try sbxJSON(dir.read("report.json") ?? "")
            #expect(json["signal"] as? Int == Int(SIGSYS))
        }
    }

    /// Everyday calls a program needs. `sleep(1)` from coreutils uses clock_nanosleep.
    @Test("clock syscalls work (coreutils sleep)", arguments: ["clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep"])
    func clockCalls(name: String) async throws {
        try await withSbxTemp("seccomp") { dir in
            // Missing from the allow-list until 8e819c7 (ENOSYS broke coreutils sleep).
            let r = await SbxExec(workdir: dir.path).probe("syscall", name)
            #expect(r.exitCode == 0 && r.line.hasPrefix("OK"), "\(r)")
        }
    }

    @Test("coreutils sleep runs")
    func coreutilsSleep() async throws {
        try await withSbxTemp("seccomp") { dir in
            let r = await SbxExec(workdir: dir.path).run(["sleep", "0.1"])
            #expect(r.exitCode == 0, "\(r)")
        }
    }
}

@Suite("Launcher: terminals")
struct TerminalTests {
    /// The probe makes the pty its controlling terminal first, so the kernel
    /// itself would allow TIOCSTI: only the filter can refuse it.
    @Test("TIOCSTI on a new pty inside is refused", arguments: [false, true])
    func tiocstiInside(highBits: Bool) async throws {
        try await withSbxTemp("tty") { dir in
            let r = await SbxExec(workdir: dir.path).probe(highBits ? ["tiocsti", "--high-bits"] : ["tiocsti"])
            #expect(r.exitCode == 1 && r.line == "DENIED errno=EPERM ctty=yes", "\(r)")
        }
    }

    /// The dangerous case: sandboxd's stdin is a terminal of the host (here a
    /// pty the test owns and nobody else uses) and the command pushes input into it.
    @Test("TIOCSTI on the host terminal passed as stdin is refused", arguments: [false, true])
    func tiocstiHostTerminal(highBits: Bool) async throws {
        try await withSbxTemp("tty") { dir in
            let (master, slave) = try sbxOpenPty()
            defer {
                close(slave)
                close(master)
            }
            var sbx = SbxExec(workdir: dir.path)
            sbx.spawn.stdin = slave
            let r = await sbx.probe(["tiocsti", "--fd", "0"] + (highBits ? ["--high-bits"] : []))
            #expect(r.exitCode == 1 && r.line == "DENIED errno=EPERM ctty=yes", "\(r)")
            // Nothing arrived in the terminal's input queue.
            var queued: Int32 = 0
            _ = ioctl(slave, UInt(FIONREAD), &queued)
            #expect(queued == 0)
        }
    }

    @Test("TIOCLINUX is refused")
    func tioclinux() async throws {
        try await withSbxTemp("tty") { dir in
            let r = await SbxExec(workdir: dir.path).probe("tioclinux")
            #expect(r.exitCode == 1 && r.line == "DENIED errno=EPERM", "\(r)")
        }
    }

    @Test("with --tty the command has a terminal, and TIOCSTI on it is refused")
    func ttyMode() async throws {
        try await withSbxTemp("tty") { dir in
            let sbx = SbxExec(workdir: dir.path, flags: ["--tty"])
            let r = await sbx.run(["sh", "-c", "tty; /probe tiocsti --fd 0"])
            #expect(r.exitCode == 1, "\(r)")
            #expect(r.stdout.contains("/dev/pts/"), "\(r)")
            #expect(r.stdout.contains("DENIED errno=EPERM ctty=yes"), "\(r)")
        }
    }
}

@Suite("Launcher: capabilities and identity")
struct CapabilityTests {
    static func field(_ r: SbxRun, _ key: String) -> String {
        r.lines.first { $0.hasPrefix(key + ":") }.map { String($0.dropFirst(key.count + 1)).trimmingCharacters(in: .whitespaces) } ?? "?"
    }

    @Test("worker keeps exactly CHOWN DAC_OVERRIDE FOWNER FSETID SETUID SETGID KILL; no_new_privs")
    func worker() async throws {
        try await withSbxTemp("caps") { dir in
            let r = await SbxExec(workdir: dir.path).probe("caps")
            // bits 0 1 3 4 5 6 7 = 0xfb
            #expect(Self.field(r, "CapEff") == "00000000000000fb", "\(r)")
            #expect(Self.field(r, "CapPrm") == "00000000000000fb", "\(r)")
            #expect(Self.field(r, "CapBnd") == "00000000000000fb", "\(r)")
            #expect(Self.field(r, "CapInh") == "0000000000000000", "\(r)")
            #expect(Self.field(r, "CapAmb") == "0000000000000000", "\(r)")
            #expect(Self.field(r, "NoNewPrivs") == "1", "\(r)")
            #expect(Self.field(r, "Seccomp") == "2", "\(r)")
            #expect(Self.field(r, "Uid").split(separator: "\t").allSatisfy { $0 == "0" }, "\(r)")
        }
    }

    @Test("untrusted runs as uid 1000 with no capabilities", arguments: ["untrusted"])
    func untrusted(profile: String) async throws {
        try await withSbxTemp("caps") { dir in
            let r = await SbxExec(workdir: dir.path, profile: profile).probe("caps")
            for key in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
                #expect(Self.field(r, key) == "0000000000000000", "\(key): \(r)")
            }
            #expect(Self.field(r, "NoNewPrivs") == "1", "\(r)")
            #expect(Self.field(r, "Uid").split(separator: "\t") == ["1000", "1000", "1000", "1000"], "\(r)")
            #expect(Self.field(r, "Gid").split(separator: "\t") == ["1000", "1000", "1000", "1000"], "\(r)")
        }
    }

    @Test("explorer and reviewer keep no capabilities", arguments: ["explorer", "reviewer"])
    func noCaps(profile: String) async throws {
        try await withSbxTemp("caps") { dir in
            let r = await SbxExec(workdir: dir.path, profile: profile).probe("caps")
            #expect(Self.field(r, "CapEff") == "0000000000000000", "\(r)")
            #expect(Self.field(r, "CapBnd") == "0000000000000000", "\(r)")
        }
    }

    @Test("hostname and user inside")
    func identity() async throws {
        try await withSbxTemp("caps") { dir in
            let r = await SbxExec(workdir: dir.path).run(["sh", "-c", "hostname; id -u; echo $USER $HOME"])
            #expect(r.lines == ["sandbox", "0", "root /home/sandbox"], "\(r)")
            let u = await SbxExec(workdir: dir.path, profile: "untrusted").run(["sh", "-c", "id -u; echo $USER"])
            #expect(u.lines == ["1000", "sandbox"], "\(u)")
        }
    }

    @Test("hard rlimits cannot be raised (no CAP_SYS_RESOURCE)", arguments: ["worker", "untrusted"])
    func noGain(profile: String) async throws {
        try await withSbxTemp("caps") { dir in
            let sbx = SbxExec(workdir: dir.path, profile: profile)
            let r = await sbx.probe("setrlimit-raise")
            #expect(r.exitCode == 1 && r.line == "DENIED errno=EPERM", "\(r)")
        }
    }
}
