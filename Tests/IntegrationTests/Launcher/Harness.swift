import Foundation
import Glibc
import Testing

/// The launcher's integration tests run the built `sandboxd` as a subprocess
/// and `sbx-probe` inside the sandboxes it starts (bound at /probe). This file
/// holds what they share: where the binaries are, a process runner with a hard
/// timeout, temporary directories, and scans of the host's processes, cgroups
/// and mounts for what a sandbox might leave behind.
enum Sbx {
    /// The package root, from this file's path (Tests/IntegrationTests/Launcher/Harness.swift).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The directory of the test executable: the build products directory of
    /// whatever scratch path this was built with.
    static let productsDir: String = {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return packageRoot + "/.build/debug" }
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (exe as NSString).deletingLastPathComponent
    }()

    static let sandboxd = productsDir + "/sandboxd"
    static let probe = productsDir + "/sbx-probe"

    /// Present when the binaries are missing, so every test fails with the fix in the message.
    static var missingBinaries: String? {
        let paths: [String] = [sandboxd, probe]
        let missing = paths.filter { access($0, X_OK) != 0 }
        guard !missing.isEmpty else { return nil }
        return "not built: \(missing.joined(separator: ", ")); run `swift build --scratch-path <scratch>` in \(packageRoot) first"
    }

    /// The environment sandboxd runs with unless a test adds to it: nothing of
    /// the test runner's own, so results do not depend on who runs the suite.
    static let baseEnvironment: [String: String] = [
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "TERM": "xterm-sbx-test",
    ]
}

// MARK: - Running processes

/// How a process ended, with everything it printed.
struct SbxRun: Sendable, CustomStringConvertible {
    var argv: [String]
    /// Host pid of the process (for sandboxd: the `sandboxd-PID` cgroups it makes).
    var pid: pid_t = -1
    /// The exit code, or 128+N when killed by signal N (as a shell reports it).
    var exitCode: Int32
    var signal: Int32?
    var stdout: String
    var stderr: String
    /// The runner's hard timeout fired and killed the process.
    var timedOut: Bool
    var seconds: Double

    /// The probe's result line: the first line of stdout.
    var line: String { stdout.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? "" }
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }

    var description: String {
        "`\(argv.joined(separator: " "))` -> exit \(exitCode)\(timedOut ? " (runner timeout)" : "") in \(String(format: "%.2f", seconds)) s\nstdout: \(stdout.isEmpty ? "(empty)" : stdout)\nstderr: \(stderr.isEmpty ? "(empty)" : stderr)"
    }
}

/// Options for one subprocess.
struct SbxSpawn: Sendable {
    var environment: [String: String] = Sbx.baseEnvironment
    var cwd: String? = nil
    /// Descriptor to use as stdin (default /dev/null).
    var stdin: Int32? = nil
    /// target -> source: descriptors the child inherits at fixed numbers.
    var extraFDs: [Int32: Int32] = [:]
    /// Hard limit; the process is SIGKILLed after it.
    var timeout: Double = 60
}

// glibc functions Swift's Glibc module leaves out (they need _GNU_SOURCE).
// pipe2 matters: pipes must be close-on-exec from the start, or a sandboxd
// spawned concurrently by another test would inherit them and hold them open.
@_silgen_name("pipe2") private func sbx_pipe2(_ fds: UnsafeMutablePointer<Int32>, _ flags: Int32) -> Int32
@_silgen_name("posix_spawn_file_actions_addchdir_np")
private func sbx_addchdir(_ fa: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: UnsafePointer<CChar>) -> Int32

@_silgen_name("posix_openpt") private func sbx_posix_openpt(_ flags: Int32) -> Int32
@_silgen_name("grantpt") private func sbx_grantpt(_ fd: Int32) -> Int32
@_silgen_name("unlockpt") private func sbx_unlockpt(_ fd: Int32) -> Int32
@_silgen_name("ptsname_r") private func sbx_ptsname_r(_ fd: Int32, _ buf: UnsafeMutablePointer<CChar>, _ len: Int) -> Int32

/// A new pseudo-terminal pair owned by the test (nobody's controlling terminal).
func sbxOpenPty() throws -> (master: Int32, slave: Int32) {
    let master = sbx_posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard master >= 0 else { throw SbxError("posix_openpt: \(String(cString: strerror(errno)))") }
    var name = [CChar](repeating: 0, count: 128)
    guard sbx_grantpt(master) == 0, sbx_unlockpt(master) == 0, sbx_ptsname_r(master, &name, name.count) == 0 else {
        close(master)
        throw SbxError("pty setup: \(String(cString: strerror(errno)))")
    }
    let slave = open(sbxString(name), O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard slave >= 0 else { close(master); throw SbxError("open pty slave: \(String(cString: strerror(errno)))") }
    return (master, slave)
}

enum SbxProcess {
    /// Starts `argv` with stdout/stderr on the given descriptors. Returns the pid.
    static func spawn(_ argv: [String], _ opts: SbxSpawn, stdout: Int32, stderr: Int32) throws -> pid_t {
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }

        let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if devnull >= 0 { close(devnull) } }
        posix_spawn_file_actions_adddup2(&fa, opts.stdin ?? devnull, 0)
        posix_spawn_file_actions_adddup2(&fa, stdout, 1)
        posix_spawn_file_actions_adddup2(&fa, stderr, 2)
        // Move inherited descriptors out of the way first, so a source that
        // happens to equal another target is not clobbered.
        var parked: [Int32] = []
        defer { parked.forEach { close($0) } }
        for (target, source) in opts.extraFDs.sorted(by: { $0.key < $1.key }) {
            let high = fcntl(source, F_DUPFD_CLOEXEC, 200)
            guard high >= 0 else { throw SbxError("dup of fd \(source): \(String(cString: strerror(errno)))") }
            parked.append(high)
            posix_spawn_file_actions_adddup2(&fa, high, target)
        }
        if let cwd = opts.cwd { _ = sbx_addchdir(&fa, cwd) }

        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = opts.environment.sorted(by: { $0.key < $1.key }).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &fa, &attr, cArgv, cEnv)
        guard rc == 0 else { throw SbxError("posix_spawn \(argv[0]): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Runs `argv` to completion (or the hard timeout), capturing its output.
    static func runBlocking(_ argv: [String], _ opts: SbxSpawn) -> SbxRun {
        let start = now()
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard sbx_pipe2(&outPipe, O_CLOEXEC) == 0, sbx_pipe2(&errPipe, O_CLOEXEC) == 0 else {
            return SbxRun(argv: argv, exitCode: -1, stdout: "", stderr: "pipe2 failed", timedOut: false, seconds: 0)
        }
        let pid: pid_t
        do {
            pid = try spawn(argv, opts, stdout: outPipe[1], stderr: errPipe[1])
        } catch {
            (outPipe + errPipe).forEach { close($0) }
            return SbxRun(argv: argv, exitCode: -1, stdout: "", stderr: "\(error)", timedOut: false, seconds: 0)
        }
        close(outPipe[1])
        close(errPipe[1])

        var out: [UInt8] = [], err: [UInt8] = []
        var open: [Int32: Bool] = [outPipe[0]: true, errPipe[0]: true]
        let deadline = start + opts.timeout
        var killedAt: Double? = nil
        var buf = [UInt8](repeating: 0, count: 65536)
        while open.values.contains(true) {
            let t = now()
            if killedAt == nil && t >= deadline {
                kill(pid, SIGKILL)
                killedAt = t
            }
            // After a kill, give descendants holding the pipes a moment, then stop reading.
            if let k = killedAt, t - k > 5 { break }
            var fds = open.filter(\.value).map { pollfd(fd: $0.key, events: Int16(POLLIN), revents: 0) }
            let wait = killedAt == nil ? max(0, deadline - t) : 0.2
            let n = poll(&fds, nfds_t(fds.count), Int32(min(wait * 1000 + 1, 1000)))
            if n < 0 && errno != EINTR { break }
            for p in fds where p.revents != 0 {
                let r = buf.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                if r <= 0 {
                    if r < 0 && errno == EINTR { continue }
                    open[p.fd] = false
                } else if p.fd == outPipe[0] {
                    out += buf[0..<r]
                } else {
                    err += buf[0..<r]
                }
            }
        }
        close(outPipe[0])
        close(errPipe[0])
        if killedAt == nil && now() >= deadline {
            kill(pid, SIGKILL)
            killedAt = now()
        }
        let status = reap(pid)
        return SbxRun(argv: argv, pid: pid, exitCode: status.code, signal: status.signal,
                      stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self),
                      timedOut: killedAt != nil, seconds: now() - start)
    }

    /// Waits for `pid`; exit code or 128+signal.
    static func reap(_ pid: pid_t) -> (code: Int32, signal: Int32?) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return (-1, nil) }
        }
        let sig = status & 0x7f
        if sig == 0 { return ((status >> 8) & 0xff, nil) }
        return (128 + sig, sig)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Runs a process on a thread of its own, so waiting never holds up the test
/// runner's (small) pool of threads.
func sbxRun(_ argv: [String], _ opts: SbxSpawn = SbxSpawn()) async -> SbxRun {
    await withCheckedContinuation { (cont: CheckedContinuation<SbxRun, Never>) in
        let thread = Thread { cont.resume(returning: SbxProcess.runBlocking(argv, opts)) }
        thread.start()
    }
}

func sbxSleep(_ seconds: Double) async {
    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
}

struct SbxError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

// MARK: - Sandboxes

/// One `sandboxd exec` invocation: flags, then `--`, then the command. The
/// probe is always bound read-only at /probe.
struct SbxExec: Sendable {
    var workdir: String
    var profile: String? = nil
    var flags: [String] = []
    var spawn = SbxSpawn()

    init(workdir: String, profile: String? = nil, flags: [String] = [], env: [String: String] = [:]) {
        self.workdir = workdir
        self.profile = profile
        self.flags = flags
        for (k, v) in env { spawn.environment[k] = v }
        spawn.cwd = workdir
    }

    func argv(_ command: [String]) -> [String] {
        var a = [Sbx.sandboxd, "exec", "--workdir", workdir, "--ro", "\(Sbx.probe):/probe"]
        if let profile { a += ["--profile", profile] }
        if !flags.contains("--tty") { a.append("--no-tty") }
        return a + flags + ["--"] + command
    }

    func run(_ command: [String]) async -> SbxRun {
        if let missing = Sbx.missingBinaries {
            return SbxRun(argv: command, exitCode: -1, stdout: "", stderr: missing, timedOut: false, seconds: 0)
        }
        return await sbxRun(argv(command), spawn)
    }

    /// `/probe ARGS...` inside the sandbox.
    func probe(_ args: String...) async -> SbxRun { await run(["/probe"] + args) }
    func probe(_ args: [String]) async -> SbxRun { await run(["/probe"] + args) }

    func with(_ change: (inout SbxExec) -> Void) -> SbxExec {
        var copy = self
        change(&copy)
        return copy
    }
}

// MARK: - Temporary directories

/// A directory under /tmp, removed (with everything in it) by `remove()`.
struct SbxTemp: Sendable {
    let path: String

    init(_ tag: String = "it") throws {
        var template = Array("/tmp/sbx-\(tag)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SbxError("mkdtemp: \(String(cString: strerror(errno)))") }
        path = String(cString: p)
        // mkdtemp makes it 0700. The sandbox's ids are not the host's root, so a
        // private root-owned directory would be closed to it (see
        // `explorerReadsPrivateFiles` in FilesystemTests.swift).
        chmod(path, 0o755)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Writes `text` at `rel` (parents created).
    @discardableResult
    func write(_ rel: String, _ text: String, mode: Int = 0o644) throws -> String {
        let full = path + "/" + rel
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: false, encoding: .utf8)
        chmod(full, mode_t(mode))
        return full
    }

    func mkdir(_ rel: String) throws {
        try FileManager.default.createDirectory(atPath: path + "/" + rel, withIntermediateDirectories: true)
    }

    func symlink(_ rel: String, to target: String) throws {
        guard Glibc.symlink(target, path + "/" + rel) == 0 else { throw SbxError("symlink \(rel): \(String(cString: strerror(errno)))") }
    }

    func link(_ rel: String, to existingRel: String) throws {
        guard Glibc.link(path + "/" + existingRel, path + "/" + rel) == 0 else {
            throw SbxError("link \(rel): \(String(cString: strerror(errno)))")
        }
    }

    func read(_ rel: String) -> String? {
        try? String(contentsOfFile: path + "/" + rel, encoding: .utf8)
    }

    func exists(_ rel: String) -> Bool { access(path + "/" + rel, F_OK) == 0 }
}

/// Runs `body` with a fresh temporary directory and removes it afterwards, even on failure.
func withSbxTemp<T>(_ tag: String = "it", _ body: (SbxTemp) async throws -> T) async throws -> T {
    try #require(Sbx.missingBinaries == nil, "\(Sbx.missingBinaries ?? "")")
    let dir = try SbxTemp(tag)
    defer { dir.remove() }
    return try await body(dir)
}

// MARK: - What a sandbox may leave behind on the host

enum SbxHost {
    /// Host processes whose command line contains `marker` (zombies have none and do not count).
    static func processes(matching marker: String) -> [(pid: Int32, cmdline: String)] {
        var found: [(Int32, String)] = []
        guard let d = opendir("/proc") else { return [] }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard let pid = Int32(name), pid != getpid() else { continue }
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { continue }
            let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            if cmdline.contains(marker) { found.append((pid, cmdline)) }
        }
        return found
    }

    /// Polls until no host process matches `marker`, up to `seconds`. Returns what is left.
    static func waitUntilGone(_ marker: String, seconds: Double = 3) async -> [(pid: Int32, cmdline: String)] {
        let end = SbxProcess.now() + seconds
        while true {
            let left = processes(matching: marker)
            if left.isEmpty || SbxProcess.now() > end { return left }
            await sbxSleep(0.05)
        }
    }

    /// cgroup directories named `name` (at most 4 levels below /sys/fs/cgroup).
    static func cgroupDirs(named name: String) -> [String] {
        var out: [String] = []
        func scan(_ dir: String, _ depth: Int) {
            guard depth <= 4, let d = opendir(dir) else { return }
            defer { closedir(d) }
            while let e = readdir(d) {
                guard e.pointee.d_type == UInt8(DT_DIR) else { continue }
                let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if n == "." || n == ".." { continue }
                let full = dir + "/" + n
                if n == name { out.append(full) }
                if depth < 4 { scan(full, depth + 1) }
            }
        }
        scan("/sys/fs/cgroup", 1)
        return out
    }

    /// Polls until no cgroup directory is named `name`, up to `seconds`; returns
    /// what is left. `sandboxd exec` hands its emptied groups to the janitor,
    /// which removes them just after sandboxd has returned.
    static func cgroupsLeft(named name: String, seconds: Double = 3) async -> [String] {
        await cgroupsLeft(named: [name], seconds: seconds)
    }

    /// The same for several sandboxd groups at once.
    static func cgroupsLeft(named names: [String], seconds: Double = 3) async -> [String] {
        let end = SbxProcess.now() + seconds
        while true {
            let left = names.flatMap { cgroupDirs(named: $0) }
            if left.isEmpty || SbxProcess.now() > end { return left }
            await sbxSleep(0.01)
        }
    }

    /// This process's memory cgroup directory, below which a sandboxd it runs
    /// makes its own: in the v1 memory hierarchy if one is mounted, else in
    /// the unified one.
    static func ownMemoryCgroup() -> String? {
        let text = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        var unified: String?
        for line in text.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            let path = f[2] == "/" ? "" : String(f[2])
            if f[1].split(separator: ",").contains("memory"), access("/sys/fs/cgroup/memory", F_OK) == 0 {
                return "/sys/fs/cgroup/memory" + path
            }
            if f[0] == "0" { unified = "/sys/fs/cgroup" + path }
        }
        return unified
    }

    static func mounts() -> Set<String> {
        let text = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return Set(text.split(separator: "\n").map(String.init))
    }

    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        // A zombie still answers kill(0); its state letter says Z.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        guard let close = stat.lastIndex(of: ")") else { return false }
        return !stat[close...].hasPrefix(") Z")
    }
}

/// A NUL-terminated C buffer as a String.
func sbxString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A unique string to find a sandbox's processes by.
func sbxMarker(_ tag: String) -> String {
    "sbx-marker-\(tag)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// Parses a JSON object printed by sandboxd.
func sbxJSON(_ text: String) throws -> [String: Any] {
    let data = Data(text.utf8)
    guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw SbxError("not a JSON object: \(text)")
    }
    return obj
}

/// A profile file in `dir` extending worker with extra TOML; returns its path.
@discardableResult
func sbxProfile(_ dir: SbxTemp, _ name: String, _ toml: String) throws -> String {
    try dir.write("profiles/\(name).toml", "extends = \"worker\"\n" + toml)
}
