import Glibc

/// Runs a helper program (sandboxd-ext) to completion: stdout captured,
/// stderr passed through so its messages reach the user unchanged.
struct Subprocess {
    var status: Int32
    var stdout: [UInt8]

    static func run(_ path: String, _ args: [String]) throws(SandboxError) -> Subprocess {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw SandboxError("pipe: \(errnoString())") }
        // Close-on-exec for our copies: the child gets its stdout end through dup2 only.
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        let argv = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        close(pipeFDs[1])
        guard rc == 0 else {
            close(pipeFDs[0])
            throw SandboxError("cannot run \(path): \(errnoString(rc)); build or install sandboxd-ext next to sandboxd")
        }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        close(pipeFDs[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = wifsignaled(status) ? 128 + wtermsig(status) : wexitstatus(status)
        return Subprocess(status: code, stdout: out)
    }
}

/// `<directory of /proc/self/exe>/NAME`: companion binaries are installed side by side.
public func companionBinary(_ name: String) -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { return name }
    let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = exe.lastIndex(of: "/") else { return name }
    return String(exe[..<slash]) + "/" + name
}
