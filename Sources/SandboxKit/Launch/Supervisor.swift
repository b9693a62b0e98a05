import CSandbox
import Glibc

/// What happened to a sandboxed command.
public struct SandboxResult: Sendable, Equatable {
    /// Exit code sandboxd itself exits with (docker run / timeout(1) conventions).
    public var exitCode: Int32
    /// Signal that ended the command, if any.
    public var signal: Int32?
    public var timedOut: Bool
    public var wallSeconds: Double
    public var userCPUSeconds: Double
    public var systemCPUSeconds: Double
    /// Peak memory of the whole sandbox (cgroup), bytes.
    public var peakMemoryBytes: UInt64?
    /// Whether the memory limit's OOM killer fired in the sandbox.
    public var oomKilled: Bool
    public var profile: String
    /// Things the host should know about (printed by the CLI, listed in the report).
    public var warnings: [String] = []
}

/// Runs a plan: cgroups, the janitor, the launch, then supervision until the
/// command exits, the timeout fires, or sandboxd is told to stop.
public struct Supervisor {
    /// A network namespace prepared for this launch, if any (root only).
    let network: PreparedNetwork?
    let teardown: Teardown

    /// When the sandbox, emptied of processes once its pid 1 is reaped, is
    /// released: its mount tree torn down and its cgroups removed. Its
    /// processes are gone before `run` returns either way.
    public enum Teardown: Sendable {
        /// Before `run` returns: a long-lived caller, or one that may unmount
        /// a file system the sandbox used, or remove its own cgroup, at once.
        case beforeReturn
        /// By the janitor, as `run` returns (0.2-0.3 ms sooner on the 2-core
        /// VM), as bwrap's pid 1 unmounts its tree after bwrap has returned.
        /// Only for a process that exits right after `run` (the sandboxd
        /// command): the janitor is its child until it exits. Without cgroups
        /// there is no janitor: a finisher (release.c) takes the tree.
        /// Ignored when this process is its pid namespace's init, whose exit
        /// would kill the janitor first.
        case afterReturn
    }

    public init(network: PreparedNetwork? = nil, teardown: Teardown = .beforeReturn) {
        self.network = network
        self.teardown = teardown == .afterReturn && getpid() == 1 ? .beforeReturn : teardown
    }

    /// Signals forwarded to the sandbox's pid 1, which passes them to the command.
    static let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]

    /// Runs `plan`. When this returns or throws, the sandbox's processes are
    /// gone, and so are its mount tree and cgroups unless their release was
    /// handed to the janitor (`Teardown.afterReturn`).
    public func run(_ plan: LaunchPlan, cgroupName: String) throws(SandboxError) -> SandboxResult {
        try run(plan, cgroupName: cgroupName, finishing: nil)
    }

    /// Runs `plan`; `finish` (a caller's records of the run) gets the result
    /// and the sandbox's mount namespace, the last reference to its mount
    /// tree. It may take the namespace (leaving -1) to tear the tree down in
    /// a process that outlives sandboxd (NamedExec's finisher); what it leaves
    /// is torn down as in `run(_:cgroupName:)`. The cgroups are removed after
    /// `finish`, so work it leaves running (its fsyncs) overlaps their removal.
    public func run(_ plan: LaunchPlan, cgroupName: String,
                    finishing finish: ((SandboxResult, _ mountNamespace: inout Int32) throws(SandboxError) -> Void)?) throws(SandboxError) -> SandboxResult {
        let start = monotonicSeconds()
        var owned: OwnedCgroups? = nil
        var layout: CgroupSet.Layout? = nil
        if plan.limits.memory > 0 || plan.limits.pids > 0 || plan.limits.cpus > 0 {
            layout = CgroupSet.detect()
            guard let layout else {
                throw SandboxError("cgroups: no usable cgroup hierarchy (need cgroup v2 with memory+pids, or v1 memory and pids); the profile sets limits, so the sandbox will not start without them")
            }
            // v2: pid 1 is cloned straight into its group, which must exist first.
            if layout.version == .v2 { owned = try OwnedCgroups.make(name: cgroupName, layout: layout, limits: plan.limits) }
        }
        func cleanupCgroups() { owned?.remove() }

        // Block the forwarded signals before the child exists; it unblocks its own.
        var mask = sigset_t()
        sigemptyset(&mask)
        for s in Supervisor.forwarded { sigaddset(&mask, s) }
        var oldMask = sigset_t()
        pthread_sigmask(SIG_BLOCK, &mask, &oldMask)
        defer { pthread_sigmask(SIG_SETMASK, &oldMask, nil) }
        let sigfd = sbx_signalfd(&mask)

        let child: LaunchedSandbox
        do {
            defer { network?.release() } // the sandbox holds the namespace now
            // v1: made while pid 1 builds the root; the command joins them first thing.
            var makeV1: (() throws(SandboxError) -> [Int32])? = nil
            if let layout, layout.version == .v1 {
                makeV1 = { () throws(SandboxError) in
                    owned = try OwnedCgroups.make(name: cgroupName, layout: layout, limits: plan.limits)
                    return owned!.set.joinFDs
                }
            }
            child = try Launcher.spawn(plan, intoCgroup: owned?.set.joinFDs[0], network: network, whileBuilding: makeV1)
        } catch {
            if sigfd >= 0 { close(sigfd) }
            cleanupCgroups()
            throw error
        }

        var terminal = plan.tty ? RawTerminal(fd: 0) : nil
        if child.ptyMaster >= 0 { copyWindowSize(to: child.ptyMaster) }
        let timedOut = supervise(child, sigfd: sigfd, timeout: plan.timeout)
        terminal?.restore()
        terminal = nil

        // Pid 1 sends the command's status just before it exits: the cgroups'
        // figures are read while its exit runs on the other core.
        var cmdStatus: Int32 = 0
        let reported = sbx_read_status(child.syncFD, &cmdStatus) == 0
        let cg = owned?.set.usage()
        var status: Int32 = 0
        var usage = rusage()
        while wait4(child.pid, &status, __WALL, &usage) < 0 && errno == EINTR {}
        // Pid 1 is gone; its mount tree is not, while we hold the namespace.
        // The last close tears it down: after this returns, the janitor's
        // (handed the namespace with the cgroups) or, with no cgroups, a
        // finisher's; else here, after the cgroups are removed, while the
        // dismissed janitor exits on the other core (a thread of its own
        // would add a cross-core wake-up: ~0.15 ms here).
        var mountNamespace = child.mountNamespace
        func closeMounts() {
            if mountNamespace >= 0 { close(mountNamespace) }
            mountNamespace = -1
        }
        func release() {
            if teardown == .afterReturn {
                if let owned, owned.handOff(mountNamespace: &mountNamespace) { return closeMounts() }
                if owned == nil && Finisher.start(mountNamespace: mountNamespace) { mountNamespace = -1 }
            }
            if let owned { owned.remove(meanwhile: closeMounts) } else { closeMounts() }
        }
        for fd in [child.pidfd, child.syncFD, child.ptyMaster, sigfd] where fd >= 0 { close(fd) }
        let gitWarning = plan.gitGuard?.verify()

        let final = reported ? cmdStatus : status
        var signal: Int32? = nil
        var code: Int32
        if wifsignaled(final) {
            signal = wtermsig(final)
            code = 128 + wtermsig(final)
        } else {
            code = wexitstatus(final)
        }
        if timedOut { code = ExitCode.timeout }
        let result = SandboxResult(
            exitCode: code, signal: signal, timedOut: timedOut,
            wallSeconds: monotonicSeconds() - start,
            userCPUSeconds: Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6,
            systemCPUSeconds: Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6,
            peakMemoryBytes: cg?.peakMemory, oomKilled: cg?.oomKilled ?? false, profile: plan.profile,
            warnings: gitWarning.map { [$0] } ?? [])
        // The caller's records start before the cgroups are removed, so the
        // removal overlaps their syncs.
        if let finish {
            do { try finish(result, &mountNamespace) } catch {
                release()
                throw error
            }
        }
        release()
        return result
    }

    /// Polls until pid 1 reports the command's status (or exits without one).
    /// Returns whether the timeout fired.
    private func supervise(_ child: LaunchedSandbox, sigfd: Int32, timeout: Double) -> Bool {
        let deadline = timeout > 0 ? monotonicSeconds() + timeout : .infinity
        var stdinOpen = child.ptyMaster >= 0
        var masterOpen = child.ptyMaster >= 0
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds = [pollfd(fd: child.pidfd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: child.syncFD, events: Int16(POLLIN), revents: 0)]
            if sigfd >= 0 { fds.append(pollfd(fd: sigfd, events: Int16(POLLIN), revents: 0)) }
            if masterOpen { fds.append(pollfd(fd: child.ptyMaster, events: Int16(POLLIN), revents: 0)) }
            if stdinOpen { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
            let remaining = deadline - monotonicSeconds()
            if remaining <= 0 {
                _ = sbx_pidfd_send_signal(child.pidfd, SIGKILL)
                drain(child.ptyMaster, &buf)
                return true
            }
            let ms = remaining.isInfinite ? -1 : Int32(min(remaining * 1000 + 1, 86_400_000))
            let n = poll(&fds, nfds_t(fds.count), ms)
            if n < 0 { if errno == EINTR { continue }; return false }
            if n == 0 { continue }
            for p in fds where p.revents != 0 {
                if p.fd == child.pidfd || p.fd == child.syncFD {
                    if masterOpen { drain(child.ptyMaster, &buf) }
                    return false
                } else if p.fd == sigfd {
                    let sig = sbx_read_signal(sigfd)
                    if sig > 0 {
                        if sig == SIGWINCH && child.ptyMaster >= 0 { copyWindowSize(to: child.ptyMaster) }
                        else { _ = sbx_pidfd_send_signal(child.pidfd, sig) }
                    }
                } else if p.fd == child.ptyMaster {
                    let r = buf.withUnsafeMutableBytes { read(child.ptyMaster, $0.baseAddress, $0.count) }
                    if r <= 0 { masterOpen = false } else { writeAll(1, buf, r) }
                } else if p.fd == 0 {
                    let r = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                    if r <= 0 {
                        stdinOpen = false
                        var eot: UInt8 = 4 // end of input, as the terminal would send it
                        _ = write(child.ptyMaster, &eot, 1)
                    } else {
                        writeAll(child.ptyMaster, buf, r)
                    }
                }
            }
        }
    }

    private func drain(_ fd: Int32, _ buf: inout [UInt8]) {
        guard fd >= 0 else { return }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        while true {
            let r = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if r <= 0 { break }
            writeAll(1, buf, r)
        }
    }

    private func writeAll(_ fd: Int32, _ buf: [UInt8], _ count: Int) {
        var off = 0
        while off < count {
            let w = buf.withUnsafeBytes { write(fd, $0.baseAddress! + off, count - off) }
            if w < 0 { if errno == EINTR { continue }; return }
            off += w
        }
    }

    private func copyWindowSize(to master: Int32) {
        var ws = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &ws) == 0 || ioctl(0, UInt(TIOCGWINSZ), &ws) == 0 {
            _ = ioctl(master, UInt(TIOCSWINSZ), &ws)
        }
    }
}

/// The host terminal in raw mode while a pty is relayed; restored on the way out.
struct RawTerminal {
    private let fd: Int32
    private var saved: termios?

    init?(fd: Int32) {
        guard isatty(fd) != 0 else { return nil }
        self.fd = fd
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { return nil }
        saved = t
        var raw = t
        cfmakeraw(&raw)
        tcsetattr(fd, TCSANOW, &raw)
    }

    mutating func restore() {
        if var t = saved { tcsetattr(fd, TCSANOW, &t) }
        saved = nil
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func wifsignaled(_ s: Int32) -> Bool { (s & 0x7f) != 0 && (s & 0x7f) != 0x7f }
func wtermsig(_ s: Int32) -> Int32 { s & 0x7f }
func wexitstatus(_ s: Int32) -> Int32 { (s >> 8) & 0xff }

