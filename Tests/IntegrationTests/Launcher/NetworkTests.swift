import Glibc
import Testing

/// A TCP listener in the test process, on every host address.
final class SbxListener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SbxError("socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = INADDR_ANY
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { close(fd); throw SbxError("bind/listen: \(String(cString: strerror(errno)))") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        port = UInt16(bigEndian: addr.sin_port)
    }

    /// Whether anybody connected (the listener is non-blocking).
    func accepted() -> Bool {
        let c = accept(fd, nil, nil)
        if c >= 0 { close(c); return true }
        return false
    }

    deinit { close(fd) }

    /// The host's IPv4 addresses other than loopback.
    static func hostAddresses() -> [String] {
        var out: [String] = []
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var p = list
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            guard let sa = ifa.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            var buf = [CChar](repeating: 0, count: 64)
            let s = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin -> String in
                var a = sin.pointee.sin_addr
                inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
                return sbxString(buf)
            }
            if !s.hasPrefix("127.") { out.append(s) }
        }
        return out
    }
}

@Suite("Launcher: network")
struct NetworkTests {
    @Test("nothing listening on the host is reachable, on loopback or any host address")
    func hostUnreachable() async throws {
        try await withSbxTemp("net") { dir in
            let listener = try SbxListener()
            let sbx = SbxExec(workdir: dir.path)
            for host in ["127.0.0.1"] + SbxListener.hostAddresses() {
                let r = await sbx.probe("connect", host, String(listener.port))
                #expect(r.exitCode == 1 && r.line.hasPrefix("DENIED"), "\(host): \(r)")
            }
            #expect(!listener.accepted(), "a connection from the sandbox reached the host listener")
            // Control: the listener does accept connections from the host itself.
            let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(c) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = listener.port.bigEndian
            addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            #expect(rc == 0)
            await sbxSleep(0.05)
            #expect(listener.accepted())
        }
    }

    @Test("the only interface is lo", arguments: ["worker", "untrusted", "reviewer"])
    func onlyLoopbackInterface(profile: String) async throws {
        try await withSbxTemp("net") { dir in
            let r = await SbxExec(workdir: dir.path, profile: profile).probe("ifaces")
            #expect(r.line == "IFACES lo", "\(r)")
        }
    }

    @Test("loopback inside works for worker")
    func loopbackWorks() async throws {
        try await withSbxTemp("net") { dir in
            let sbx = SbxExec(workdir: dir.path)
            let r = await sbx.probe("loopback")
            #expect(r.exitCode == 0 && r.line.hasPrefix("OK"), "\(r)")
            // With a real server too, when python3 is there.
            try #require(access("/usr/bin/python3", X_OK) == 0, "python3 is needed (scripts/test installs it)")
            let py = """
                import socket, threading
                s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
                port = s.getsockname()[1]
                def serve():
                    c, _ = s.accept(); c.sendall(b"pong"); c.close()
                threading.Thread(target=serve).start()
                c = socket.create_connection(("127.0.0.1", port)); print(c.recv(4).decode())
                """
            let p = await sbx.run(["/usr/bin/python3", "-c", py])
            #expect(p.exitCode == 0 && p.line == "pong", "\(p)")
        }
    }

    /// As root, sandboxd prepares the network namespace on a helper thread and
    /// the sandbox starts in it (see netns.c); that namespace belongs to the
    /// host, so a profile keeping a network capability must get one it owns.
    @Test("each sandbox has a network namespace of its own; one keeping NET_BIND_SERVICE owns it")
    func ownNamespace() async throws {
        try await withSbxTemp("net") { dir in
            var host = stat()
            #expect(stat("/proc/self/ns/net", &host) == 0)
            // Both alive at once: a namespace freed by a sandbox that has ended
            // may hand its inode number to the next one.
            let ns = ["/bin/sh", "-c", "/usr/bin/stat -L -c %i /proc/self/ns/net; sleep 1.5"]
            async let first = SbxExec(workdir: dir.path).run(ns)
            async let second = SbxExec(workdir: dir.path).run(ns)
            let (inside, again) = await (first, second)
            #expect(inside.exitCode == 0 && !inside.line.isEmpty && inside.line != String(host.st_ino), "\(inside)")
            #expect(again.exitCode == 0 && again.line != inside.line, "two sandboxes shared a namespace: \(again)")

            try #require(access("/usr/bin/python3", X_OK) == 0, "python3 is needed (scripts/test installs it)")
            let profile = try dir.write("bind.toml", "extends = \"embedded:worker\"\n[capabilities]\nkeep_add = [\"NET_BIND_SERVICE\"]\n")
            let py = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 80)); print('bound')"
            let kept = await SbxExec(workdir: dir.path, profile: profile).run(["/usr/bin/python3", "-c", py])
            #expect(kept.exitCode == 0 && kept.line == "bound", "\(kept)")
            // Control: without the capability the same bind is refused.
            let plain = await SbxExec(workdir: dir.path).run(["/usr/bin/python3", "-c", py])
            #expect(plain.exitCode != 0 && plain.stderr.contains("Permission denied"), "\(plain)")
        }
    }

    @Test("no network at all for untrusted and reviewer", arguments: ["untrusted", "reviewer"])
    func noLoopback(profile: String) async throws {
        try await withSbxTemp("net") { dir in
            let r = await SbxExec(workdir: dir.path, profile: profile).probe("loopback")
            #expect(r.exitCode == 1 && r.line.hasPrefix("DENIED"), "\(r)")
        }
    }
}
