import Glibc
import Testing

/// A workdir with secrets in the places the worker profile's `blocked`
/// patterns cover, and ordinary files next to them.
struct SecretsFixture {
    let dir: SbxTemp
    var workdir: String { dir.path + "/work" }

    static let secrets = [
        ".env", ".env.local", "sub/dir/.env.prod", "a/b/c/d/key.pem", "deep/er/id_rsa", ".npmrc", "pkg/.pypirc",
    ]

    init(_ dir: SbxTemp) throws {
        self.dir = dir
        for s in Self.secrets { try dir.write("work/" + s, "SECRET(\(s))\n") }
        try dir.write("work/README.md", "hello\n")
        try dir.write("work/sub/dir/main.swift", "print(1)\n")
        // Other names for the secrets: symlinks (relative, absolute, through a directory) and hard links.
        try dir.symlink("work/link-to-env", to: ".env")
        try dir.symlink("work/sub/up-env", to: "../.env")
        try dir.symlink("work/abs-pem", to: dir.path + "/work/a/b/c/d/key.pem")
        try dir.symlink("work/sub-link", to: "sub")
        try dir.link("work/notes.txt", to: "work/.env")
        try dir.link("work/sub/dir/cert.txt", to: "work/a/b/c/d/key.pem")
        // A git directory: hooks and config are protected, the rest is not.
        try dir.write("work/.git/HEAD", "ref: refs/heads/main\n")
        try dir.write("work/.git/config", "[core]\n\tbare = false\n")
        try dir.write("work/.git/hooks/pre-commit", "#!/bin/sh\nexit 0\n", mode: 0o755)
        try dir.mkdir("work/.git/objects")
    }
}

@Suite("Launcher: blocked and protected paths")
struct BlockedPathTests {
    /// A workdir large enough for the walk's index (2,000 entries): after the
    /// index answers a walk, secrets added anywhere are still masked.
    @Test("a secret added to an indexed workdir reads empty")
    func secretAddedAfterIndexedWalk() async throws {
        try await withSbxTemp("walkindex") { dir in
            for d in 0..<30 {
                for f in 0..<70 { try dir.write("work/d\(d)/f\(f).c", "") }
            }
            // Directories changed in the last two seconds are not recorded.
            await sbxSleep(2.2)
            let sbx = SbxExec(workdir: dir.path + "/work", env: ["SANDBOXD_CACHE": dir.path + "/cache"])
            func walked() async throws -> (read: Int, reused: Int, masks: Int) {
                let r = await sbx.with { $0.flags = ["--dry-run", "--json-report", "-"] }.run(["true"])
                let plan = try sbxJSON(r.stdout)
                let dirs = try #require(plan["walked_directories"] as? [String: Any], "\(r)")
                return (dirs["read"] as? Int ?? -1, dirs["reused"] as? Int ?? -1, plan["masked_paths"] as? Int ?? -1)
            }
            let first = try await walked()
            #expect(first.read == 31 && first.reused == 0, "\(first)")
            let second = try await walked()
            #expect(second.read == 0 && second.reused == 31, "\(second)")

            try dir.write("work/d17/.env.prod", "SECRET\n")
            try dir.write("work/d4/new/id_rsa", "SECRET\n")
            // The first walk after the change: the index's times of d17 and d4
            // are stale and d4/new is not in it, so all three are read. (Only
            // this walk: it may record them for the next one once they are
            // two seconds old, which a loaded machine can reach.)
            let third = try await walked()
            #expect(third.read == 3 && third.reused == 29 && third.masks == second.masks + 2, "\(third) after \(second)")
            for secret in ["d17/.env.prod", "d4/new/id_rsa"] {
                let r = await sbx.probe("read", secret)
                #expect(r.line == "OK len=0 data=", "\(secret): \(r)")
            }

            // A cache the sandbox could write (here inside its workdir) is neither read nor written.
            let exposed = sbx.with { $0.spawn.environment["SANDBOXD_CACHE"] = dir.path + "/work/.cache" }
            for _ in 0..<2 {
                let r = await exposed.with { $0.flags = ["--dry-run", "--json-report", "-"] }.run(["true"])
                let dirs = try #require(try sbxJSON(r.stdout)["walked_directories"] as? [String: Any], "\(r)")
                #expect(dirs["reused"] as? Int == 0, "\(dirs)")
            }
            #expect(!dir.exists("work/.cache"), "nothing written where the sandbox could forge it")
        }
    }

    /// Every secret reads as an empty file.
    @Test("a blocked file reads empty", arguments: SecretsFixture.secrets)
    func blockedFileIsEmpty(path: String) async throws {
        try await withSbxTemp("blocked") { dir in
            let fx = try SecretsFixture(dir)
            let sbx = SbxExec(workdir: fx.workdir)
            let r = await sbx.probe("read", path)
            #expect(r.line == "OK len=0 data=", "\(r)")
            // And it is not writable either.
            let w = await sbx.probe("write", path, "overwritten\n")
            #expect(w.line.hasPrefix("DENIED"), "\(w)")
            #expect(dir.read("work/" + path) == "SECRET(\(path))\n")
        }
    }

    /// Other ways to name a secret: symlinks, `..`, /proc/self/root, /proc/self/cwd, hard links.
    @Test("a blocked file is empty through every other name", arguments: [
        "link-to-env", "sub/up-env", "abs-pem", "sub-link/dir/.env.prod",
        "sub/../.env", "sub/dir/../../.env", "./a/b/../b/c/d/key.pem",
        "/proc/self/root/WORK/.env", "/proc/self/cwd/.env", "/proc/self/root/WORK/sub/dir/.env.prod",
        "notes.txt", "sub/dir/cert.txt",
    ])
    func blockedThroughOtherNames(path: String) async throws {
        try await withSbxTemp("blocked") { dir in
            let fx = try SecretsFixture(dir)
            let p = path.replacingOccurrences(of: "WORK", with: String(fx.workdir.dropFirst()))
            let r = await SbxExec(workdir: fx.workdir).probe("read", p)
            #expect(r.line == "OK len=0 data=", "\(r)")
        }
    }

    @Test("ordinary files next to the secrets stay readable")
    func ordinaryFilesReadable() async throws {
        try await withSbxTemp("blocked") { dir in
            let fx = try SecretsFixture(dir)
            let sbx = SbxExec(workdir: fx.workdir)
            #expect(await sbx.probe("read", "README.md").line == "OK len=6 data=hello\\n")
            #expect(await sbx.probe("read", "sub/dir/main.swift").line == "OK len=9 data=print(1)\\n")
        }
    }

    @Test("a blocked file cannot be removed or renamed away")
    func blockedFileCannotBeRemoved() async throws {
        try await withSbxTemp("blocked") { dir in
            let fx = try SecretsFixture(dir)
            let r = await SbxExec(workdir: fx.workdir).run(["sh", "-c", "rm -f .env; mv .env.local moved; cat .env .env.local moved 2>&1; exit 0"])
            #expect(!r.stdout.contains("SECRET"), "\(r)")
            #expect(dir.read("work/.env") == "SECRET(.env)\n")
            #expect(dir.read("work/.env.local") == "SECRET(.env.local)\n")
        }
    }

    /// `~/.ssh` of the invoking user (HOME of sandboxd), exposed through a
    /// read-only bind of that home: the directory is there and empty, while
    /// ordinary files in the home are readable.
    @Test("~/.ssh and ~/.aws are empty when the home is bound in")
    func blockedHomeDirectories() async throws {
        try await withSbxTemp("home") { dir in
            let fx = try SecretsFixture(dir)
            try dir.write("home/.ssh/id_ed25519", "PRIVATE KEY\n")
            try dir.write("home/.aws/credentials", "aws_secret\n")
            try dir.write("home/.netrc", "machine x password y\n")
            try dir.write("home/notes", "hi\n")
            try dir.symlink("work/ssh-link", to: "/hosthome/.ssh/id_ed25519")
            let sbx = SbxExec(workdir: fx.workdir, flags: ["--ro", dir.path + "/home:/hosthome"],
                              env: ["HOME": dir.path + "/home"])
            #expect(await sbx.probe("read", "/hosthome/notes").line == "OK len=3 data=hi\\n")
            let key = await sbx.probe("read", "/hosthome/.ssh/id_ed25519")
            #expect(key.line == "DENIED errno=ENOENT stage=open", "\(key)")
            let aws = await sbx.probe("read", "/hosthome/.aws/credentials")
            #expect(aws.line == "DENIED errno=ENOENT stage=open", "\(aws)")
            let netrc = await sbx.probe("read", "/hosthome/.netrc")
            #expect(netrc.line == "OK len=0 data=", "\(netrc)")
            let viaLink = await sbx.probe("read", "ssh-link")
            #expect(viaLink.line.hasPrefix("DENIED"), "\(viaLink)")
            let ls = await sbx.run(["ls", "-A", "/hosthome/.ssh"])
            #expect(ls.exitCode == 0 && ls.stdout.isEmpty, "\(ls)")
        }
    }

    /// The same, with the home bound at its own path (`--ro $HOME`). Temporary
    /// directories live under /tmp, so this also checks that a `--ro` bind
    /// below /tmp is visible at all.
    @Test("~/.ssh is empty when the home is bound at its own path under /tmp")
    func blockedHomeAtOwnPath() async throws {
        try await withSbxTemp("home") { dir in
            let fx = try SecretsFixture(dir)
            let home = dir.path + "/home"
            try dir.write("home/.ssh/id_rsa", "PRIVATE KEY\n")
            try dir.write("home/notes", "hi\n")
            let sbx = SbxExec(workdir: fx.workdir, flags: ["--ro", home], env: ["HOME": home])
            let key = await sbx.probe("read", home + "/.ssh/id_rsa")
            #expect(key.line.hasPrefix("DENIED"), "\(key)")
            // Was hidden by the sandbox's own /tmp while `--ro` binds were planned
            // before the /tmp and HOME tmpfs mounts (Planner.swift).
            let notes = await sbx.probe("read", home + "/notes")
            #expect(notes.line == "OK len=3 data=hi\\n", "\(notes)")
        }
    }

    /// A hard link in the workdir to a secret of the invoking user's home: the
    /// home itself is not bound in (the usual case), but the link is another
    /// name for the same bytes.
    @Test("a hard link in the workdir to a ~/ secret reads empty", arguments: [
        (".aws/credentials", false), (".netrc", false), (".aws/credentials", true), (".config/gcloud/legacy/me/adc.json", true),
    ])
    func hardLinkToHomeSecret(secret: String, homeBound: Bool) async throws {
        try await withSbxTemp("hardlink") { dir in
            let fx = try SecretsFixture(dir)
            try dir.write("home/" + secret, "HOME-SECRET\n")
            try dir.link("work/innocent.txt", to: "home/" + secret)
            let sbx = SbxExec(workdir: fx.workdir, flags: homeBound ? ["--ro", dir.path + "/home:/hosthome"] : [],
                              env: ["HOME": dir.path + "/home"])
            let r = await sbx.probe("read", "innocent.txt")
            #expect(r.line == "OK len=0 data=", "\(r)")
            
        }
    }

    /// Names are bytes: one that is not UTF-8, one with a newline, and the NFC
    /// and NFD spellings of "café" (equal as Swift strings, two directories).
    /// Each secret reads empty, through a hard link too, and the workdir's
    /// other files are still there.
    @Test("a secret whose name is not UTF-8, holds a newline or has two spellings reads empty")
    func blockedNamesAreBytes() async throws {
        try await withSbxTemp("bytes") { dir in
            try dir.write("work/plain.txt", "ok")
            func create(_ rel: String, _ bytes: [UInt8], directory: Bool = false) throws {
                let path = Array((dir.path + "/work/").utf8) + bytes
                let ok = (path + [0]).withUnsafeBufferPointer { buf -> Bool in
                    let p = UnsafeRawPointer(buf.baseAddress!).assumingMemoryBound(to: CChar.self)
                    if directory { return Glibc.mkdir(p, 0o755) == 0 }
                    let fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
                    defer { close(fd) }
                    return fd >= 0 && Glibc.write(fd, "SECRET(\(rel))", rel.utf8.count + 8) > 0
                }
                guard ok else { throw SbxError("create \(rel): \(String(cString: strerror(errno)))") }
            }
            // The names as printf(1) writes them inside, and as bytes here.
            let secrets: [(printf: String, bytes: [UInt8])] = [
                ("caf\\351/.env", Array("caf".utf8) + [0xE9] + Array("/.env".utf8)),
                (".env\\377", Array(".env".utf8) + [0xFF]),
                ("d/id_rsa\\nx", Array("d/id_rsa\nx".utf8)),
                ("caf\\303\\251/.env", Array("caf\u{E9}/.env".utf8)),
                ("cafe\\314\\201/.env", Array("cafe\u{301}/.env".utf8)),
            ]
            for name in [Array("caf".utf8) + [0xE9], Array("caf\u{E9}".utf8), Array("cafe\u{301}".utf8), Array("d".utf8)] {
                try create("dir", name, directory: true)
            }
            for (i, s) in secrets.enumerated() { try create("secret \(i)", s.bytes) }
            // A second name for the non-UTF-8 secret.
            let linked = (Array((dir.path + "/work/").utf8) + secrets[1].bytes + [0]).withUnsafeBufferPointer {
                Glibc.link(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), dir.path + "/work/notes.txt")
            }
            #expect(linked == 0)

            let names = secrets.map { "'\($0.printf)'" }.joined(separator: " ") + " notes.txt plain.txt"
            let r = await SbxExec(workdir: dir.path + "/work").run(
                ["sh", "-c", "for n in \(names); do f=$(printf \"$n\"); printf '[%s]' \"$(cat \"$f\" 2>&1)\"; done"])
            #expect(r.stdout == "[][][][][][][ok]", "\(r)")
        }
    }

    @Test("hidden system files read empty")
    func hiddenSystemFiles() async throws {
        try await withSbxTemp("hide") { dir in
            let sbx = SbxExec(workdir: dir.path)
            guard access("/etc/shadow", F_OK) == 0 else { return }
            let r = await sbx.probe("read", "/etc/shadow")
            #expect(r.line == "OK len=0 data=", "\(r)")
        }
    }
}

@Suite("Launcher: protected paths")
struct ProtectedPathTests {
    @Test("writes to .git/hooks and .git/config fail; the rest of .git is writable", arguments: [
        (["write", ".git/hooks/pre-commit", "evil\n"], false),
        (["write", ".git/hooks/post-checkout", "evil\n"], false),
        (["append", ".git/config", "[core]\n\tfsmonitor = evil\n"], false),
        (["unlink", ".git/hooks/pre-commit"], false),
        (["append", ".git/HEAD", "\n"], true),
        (["write", ".git/objects/new", "blob\n"], true),
        (["write", ".git/index", "index\n"], true),
    ])
    func gitProtected(args: [String], allowed: Bool) async throws {
        try await withSbxTemp("git") { dir in
            let fx = try SecretsFixture(dir)
            let r = await SbxExec(workdir: fx.workdir).probe(args)
            if allowed {
                #expect(r.exitCode == 0 && r.line.hasPrefix("OK"), "\(r)")
            } else {
                #expect(r.exitCode == 1 && r.line.hasPrefix("DENIED errno=EROFS"), "\(r)")
            }
            #expect(dir.read("work/.git/hooks/pre-commit") == "#!/bin/sh\nexit 0\n")
            #expect(dir.read("work/.git/config") == "[core]\n\tbare = false\n")
        }
    }

    /// Renaming `.git` (which is not itself a mount point) and building a new
    /// one around it sidesteps the read-only binds on hooks and config.
    @Test("a hook cannot be planted by renaming .git")
    func gitRenameBypass() async throws {
        try await withSbxTemp("git") { dir in
            let fx = try SecretsFixture(dir)
            let r = await SbxExec(workdir: fx.workdir).run([
                "sh", "-c", "mv .git .git-moved && mkdir -p .git/hooks && printf 'evil\\n' > .git/hooks/pre-commit; exit 0",
            ])
            #expect(r.exitCode == 0, "\(r)")
            #expect(dir.read("work/.git/hooks/pre-commit") == "#!/bin/sh\nexit 0\n")
            #expect(!dir.exists("work/.git-moved"))
            
        }
    }
}

extension ProtectedPathTests {
    /// The read-only bind is optional: with no .git/hooks at launch there is
    /// nothing to bind, and the sandbox may create the directory and a hook in it.
    @Test("a hook cannot be planted when .git/hooks does not exist yet")
    func gitHooksMissing() async throws {
        try await withSbxTemp("git") { dir in
            try dir.write("work/.git/HEAD", "ref: refs/heads/main\n")
            try dir.write("work/.git/config", "[core]\n\tbare = false\n")
            let r = await SbxExec(workdir: dir.path + "/work").run([
                "sh", "-c", "mkdir -p .git/hooks && printf 'evil\\n' > .git/hooks/pre-commit; exit 0",
            ])
            #expect(r.exitCode == 0, "\(r)")
            #expect(!dir.exists("work/.git/hooks/pre-commit"))
            
        }
    }

    /// git reads its config from `$GIT_DIR/commondir` when that file exists, so
    /// writing it redirects the host's git to a config the sandbox wrote
    /// (core.fsmonitor, core.hooksPath: code run by the next `git status`).
    @Test("git's config cannot be redirected through .git/commondir")
    func gitCommondir() async throws {
        try await withSbxTemp("git") { dir in
            let fx = try SecretsFixture(dir)
            let r = await SbxExec(workdir: fx.workdir).probe("write", ".git/commondir", "../evil\n")
            // It cannot be refused without changing git's behaviour when absent (see
            // GitGuard): sandboxd moves a planted commondir into quarantine after the run.
            #expect(!dir.exists("work/.git/commondir"), "\(r)")
            #expect(r.stderr.contains("commondir"), "the host is warned: \(r)")
        }
    }
}

@Suite("Launcher: writable and read-only places")
struct WritablePlacesTests {
    @Test("writes outside the workdir fail", arguments: ["/usr/sbx-probe", "/etc/sbx-probe", "/sbx-probe", "/opt/sbx-probe",
                                                          "/usr/bin/sbx-probe", "/home/sbx-probe", "/probe"])
    func writesOutsideWorkdirFail(path: String) async throws {
        try await withSbxTemp("ro") { dir in
            let r = await SbxExec(workdir: dir.path).probe("write", path)
            #expect(r.exitCode == 1, "\(r)")
            #expect(r.line.hasPrefix("DENIED errno=EROFS") || r.line.hasPrefix("DENIED errno=EACCES"), "\(r)")
            if path != "/probe" { #expect(access(path, F_OK) != 0, "\(path) appeared on the host") }
        }
    }

    @Test("/dev holds only the harmless devices")
    func minimalDev() async throws {
        try await withSbxTemp("dev") { dir in
            let r = await SbxExec(workdir: dir.path).run(["ls", "-A", "/dev"])
            let allowed: Set<String> = ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
                                        "fd", "stdin", "stdout", "stderr"]
            #expect(r.exitCode == 0 && !r.lines.isEmpty, "\(r)")
            #expect(Set(r.lines).subtracting(allowed).isEmpty, "\(r)")
            #expect(await SbxExec(workdir: dir.path).probe("write", "/dev/null").line.hasPrefix("OK"))
            // mknod of a disk is refused (no CAP_MKNOD, nodev mounts).
            let mk = await SbxExec(workdir: dir.path).run(["sh", "-c", "mknod /tmp/sda b 8 0 && echo made"])
            #expect(!mk.stdout.contains("made"), "\(mk)")
        }
    }

    @Test("/proc/sys is read-only and /proc/kcore is masked")
    func procHardening() async throws {
        try await withSbxTemp("proc") { dir in
            let sbx = SbxExec(workdir: dir.path)
            // The sandbox's own UTS namespace: harmless even if it went through.
            let sys = await sbx.probe("write", "/proc/sys/kernel/domainname", "probe")
            #expect(sys.line.hasPrefix("DENIED errno=EROFS") || sys.line.hasPrefix("DENIED errno=EACCES"), "\(sys)")
            let kcore = await sbx.probe("read", "/proc/kcore")
            #expect(kcore.line == "OK len=0 data=" || kcore.line.hasPrefix("DENIED"), "\(kcore)")
        }
    }

    @Test("the workdir, /tmp and HOME are writable for worker; new files keep the host owner")
    func workerWritable() async throws {
        try await withSbxTemp("rw") { dir in
            let sbx = SbxExec(workdir: dir.path)
            let privateName = "/tmp/" + sbxMarker("private")
            for path in [dir.path + "/made-inside", privateName, "/home/sandbox/x", "/dev/shm/x"] {
                let r = await sbx.probe("write", path, "inside\n")
                #expect(r.exitCode == 0, "\(path): \(r)")
            }
            #expect(dir.read("made-inside") == "inside\n")
            var st = stat()
            #expect(stat(dir.path + "/made-inside", &st) == 0)
            var owner = stat()
            stat(dir.path, &owner)
            #expect(st.st_uid == owner.st_uid && st.st_gid == owner.st_gid, "uid \(st.st_uid) gid \(st.st_gid)")
            // /tmp is the sandbox's own.
            #expect(access(privateName, F_OK) != 0)
        }
    }

    @Test("explorer: workdir and HOME are read-only, /tmp is writable")
    func explorerReadOnly() async throws {
        try await withSbxTemp("explorer") { dir in
            try dir.write("existing", "keep\n")
            let sbx = SbxExec(workdir: dir.path, profile: "explorer")
            let wd = await sbx.probe("write", dir.path + "/new")
            #expect(wd.line.hasPrefix("DENIED errno=EROFS"), "\(wd)")
            // An existing file owned by the host's root: permissions may refuse before the read-only mount does.
            let existing = await sbx.probe("append", "existing")
            #expect(existing.line.hasPrefix("DENIED errno=EROFS") || existing.line.hasPrefix("DENIED errno=EACCES"), "\(existing)")
            let home = await sbx.probe("write", "/home/sandbox/x")
            #expect(home.line.hasPrefix("DENIED errno=EROFS"), "\(home)")
            let tmp = await sbx.probe("write", "/tmp/x")
            #expect(tmp.line.hasPrefix("OK"), "\(tmp)")
            #expect(await sbx.probe("read", "existing").line == "OK len=5 data=keep\\n")
            #expect(!dir.exists("new") && dir.read("existing") == "keep\n")
        }
    }

    /// A root-owned workdir is bound without an idmap when it is read-only, so
    /// the sandbox's root (host uid 100000) sees it as "other": owner-only
    /// files are unreadable, and a 0700 workdir cannot even be entered.
    @Test("explorer reads owner-only files of a root-owned workdir", arguments: ["explorer", "reviewer"])
    func explorerReadsPrivateFiles(profile: String) async throws {
        try await withSbxTemp("private") { dir in
            try dir.write("work/private.txt", "mine\n", mode: 0o600)
            var st = stat()
            stat(dir.path, &st)
            try #require(st.st_uid == 0, "this check needs a root-owned workdir")
            let sbx = SbxExec(workdir: dir.path + "/work", profile: profile)
            do {
                let r = await sbx.probe("read", "private.txt")
                #expect(r.line == "OK len=5 data=mine\\n", "\(r)")
                chmod(dir.path + "/work", 0o700)
                let enter = await sbx.probe("getpid")
                #expect(enter.exitCode == 0, "\(enter)")
            }
        }
    }

    /// Files the sandbox creates in a root-owned workdir land as host uid 0: a
    /// setuid bit on one of them would make a setuid-root program on the host.
    @Test("the sandbox cannot leave a setuid-root program in the workdir", arguments: ["worker", "untrusted"])
    func noSetuidRootOnHost(profile: String) async throws {
        try await withSbxTemp("suid") { dir in
            var owner = stat()
            stat(dir.path, &owner)
            try #require(owner.st_uid == 0, "this check needs a root-owned workdir")
            let r = await SbxExec(workdir: dir.path, profile: profile).run([
                "sh", "-c", "cp /probe ./suid && chmod 4755 suid; exit 0",
            ])
            #expect(r.exitCode == 0, "\(r)")
            var st = stat()
            guard stat(dir.path + "/suid", &st) == 0 else { return }
            let setuidRoot = st.st_uid == 0 && (st.st_mode & S_ISUID) != 0
            #expect(!setuidRoot, "mode \(String(st.st_mode, radix: 8)) uid \(st.st_uid)")
            
        }
    }
}
