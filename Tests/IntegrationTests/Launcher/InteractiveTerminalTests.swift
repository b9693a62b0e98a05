import Glibc
import Testing

@Suite("Launcher: interactive terminal")
struct InteractiveTerminalTests {
    /// `sandboxd exec -- bash` on a terminal: sandboxd relays through the
    /// sandbox's own pty, bash gets job control, and its exit code comes back.
    @Test("bash on a terminal has a prompt and job control")
    func interactiveBash() async throws {
        try await withSbxTemp("tty") { dir in
            let (master, slave) = try sbxOpenPty()
            defer { close(master) }
            var opts = SbxSpawn()
            opts.stdin = slave
            opts.cwd = dir.path
            let argv = [Sbx.sandboxd, "exec", "--workdir", dir.path, "--", "/bin/bash", "--norc", "-i"]
            let pid = try SbxProcess.spawn(argv, opts, stdout: slave, stderr: slave)
            close(slave)
            let script = "sleep 100 &\njobs\ncase $- in *m*) echo JOBCTL=on;; esac\nexit 7\n"
            _ = script.withCString { write(master, $0, strlen($0)) }
            // Read everything the terminal shows until sandboxd closes it (EIO), with a deadline.
            var out = [UInt8]()
            var buf = [UInt8](repeating: 0, count: 4096)
            let deadline = SbxProcess.now() + 20
            while SbxProcess.now() < deadline {
                var p = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 200) <= 0 { continue }
                let n = buf.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                out += buf[0..<n]
            }
            if SbxProcess.now() >= deadline { kill(pid, SIGKILL) }
            let status = SbxProcess.reap(pid)
            let text = String(decoding: out, as: UTF8.self)
            #expect(status.code == 7, "exit \(status), terminal:\n\(text)")
            #expect(text.contains("Running"), "jobs lists the background job:\n\(text)")
            #expect(text.contains("\nJOBCTL=on"), "job control (monitor mode) is on:\n\(text)")
            #expect(!text.contains("no job control"), "\(text)")
        }
    }
}
