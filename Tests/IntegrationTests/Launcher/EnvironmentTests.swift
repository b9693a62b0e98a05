import Glibc
import Testing

@Suite("Launcher: environment and descriptors")
struct EnvironmentTests {
    @Test("host variables are dropped; TERM is kept; --env sets")
    func scrubbed() async throws {
        try await withSbxTemp("env") { dir in
            let secret = sbxMarker("secret")
            let sbx = SbxExec(workdir: dir.path, flags: ["--env", "FOO=bar baz", "--env", "HOME=/elsewhere"],
                              env: ["SECRET_TOKEN": secret, "AWS_SECRET_ACCESS_KEY": secret, "LANG": "C.UTF-8"])
            let token = await sbx.probe("getenv", "SECRET_TOKEN")
            #expect(token.line == "UNSET", "\(token)")
            let aws = await sbx.probe("getenv", "AWS_SECRET_ACCESS_KEY")
            #expect(aws.line == "UNSET", "\(aws)")
            #expect(await sbx.probe("getenv", "TERM").line == "SET xterm-sbx-test")
            #expect(await sbx.probe("getenv", "LANG").line == "SET C.UTF-8")
            #expect(await sbx.probe("getenv", "FOO").line == "SET bar baz")
            #expect(await sbx.probe("getenv", "HOME").line == "SET /elsewhere")
            let all = await sbx.run(["env"])
            #expect(all.exitCode == 0 && !all.stdout.contains(secret), "\(all)")
        }
    }

    @Test("untrusted keeps only TERM")
    func untrustedKeepsOnlyTerm() async throws {
        try await withSbxTemp("env") { dir in
            let sbx = SbxExec(workdir: dir.path, profile: "untrusted", env: ["LANG": "C.UTF-8", "TZ": "UTC"])
            #expect(await sbx.probe("getenv", "TERM").line == "SET xterm-sbx-test")
            #expect(await sbx.probe("getenv", "LANG").line == "UNSET")
            #expect(await sbx.probe("getenv", "TZ").line == "UNSET")
        }
    }

    /// The secret must not be in any process's environment inside, including
    /// pid 1 (a copy of sandboxd, whose own environment has it).
    @Test("no /proc/*/environ inside holds a host secret")
    func noSecretInAnyEnviron() async throws {
        try await withSbxTemp("env") { dir in
            let secret = sbxMarker("secret")
            for profile in ["worker", "untrusted"] {
                let sbx = SbxExec(workdir: dir.path, profile: profile, env: ["SECRET_TOKEN": secret])
                let r = await sbx.run(["sh", "-c", "/probe sleep 30 & /probe environ-grep \(secret); rc=$?; kill $!; exit $rc"])
                #expect(r.exitCode == 1 && r.line.hasPrefix("ABSENT"), "\(profile): \(r)")
                // The background process and the shell were readable: the scan saw something.
                let readable = r.line.split(separator: " ").first { $0.hasPrefix("readable=") }.flatMap { Int($0.dropFirst(9)) } ?? 0
                #expect(readable >= 2, "\(profile): \(r)")
                // Control: a variable passed on purpose is found the same way.
                let control = await sbx.with { $0.flags += ["--env", "PASSED=\(secret)"] }
                    .run(["sh", "-c", "/probe sleep 30 & /probe environ-grep \(secret); rc=$?; kill $!; exit $rc"])
                #expect(control.line.hasPrefix("FOUND"), "\(profile): \(control)")
            }
        }
    }

    @Test("only descriptors 0-2 reach the command", arguments: ["worker", "untrusted"])
    func noLeakedDescriptors(profile: String) async throws {
        try await withSbxTemp("fds") { dir in
            let file = try dir.write("held-open", "x")
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            try #require(fd >= 0)
            defer { close(fd) }
            var sbx = SbxExec(workdir: dir.path, profile: profile)
            sbx.spawn.extraFDs = [7: fd, 12: fd]
            let r = await sbx.probe("fds")
            #expect(r.exitCode == 0 && r.line == "FDS 0 1 2", "\(r)")
            let sh = await sbx.run(["sh", "-c", "ls /proc/self/fd"])
            #expect(sh.lines.sorted() == ["0", "1", "2", "3"], "ls shows 0-2 and its own directory fd: \(sh)")
        }
    }
}
