import Foundation
import Glibc
import Testing
@testable import SandboxKit

@Suite("Planner")
struct PlannerTests {
    func request(_ workdir: String, uid: UInt32 = 0, env: [String: String] = [:], home: String = "/nonexistent-home") -> ExecRequest {
        ExecRequest(argv: ["/bin/true"], workdir: workdir, hostEnvironment: env, hostHome: home, hostUID: uid, hostGID: uid)
    }

    @Test func rootAssemblyOrderAndDefaults() throws {
        try withTempDir { dir in
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: request(dir))
            let kinds = plan.mounts.map(\.kind)
            // System binds first, then /proc, /dev, /tmp, HOME, the workdir, protected paths, masks.
            let proc = try #require(kinds.firstIndex(of: .proc))
            let dev = try #require(kinds.firstIndex(of: .dev))
            let work = try #require(plan.mounts.firstIndex { $0.kind == .bind && $0.target == dir })
            #expect(plan.mounts[..<proc].allSatisfy { ($0.kind == .bind && $0.readOnly) || $0.kind == .symlink })
            #expect(proc < dev && dev < work)
            #expect(plan.mounts.contains { $0.kind == .tmpfs && $0.target == "/tmp" && $0.data!.contains("size=\(1 << 30)") })
            #expect(plan.mounts.contains { $0.kind == .readOnly && $0.target == "/proc/sys" })
            #expect(plan.mounts.contains { $0.kind == .mask && $0.target == "/proc/kcore" })
            #expect(!plan.mounts[work].readOnly)
            #expect(plan.mounts.contains { $0.kind == .readOnly && $0.target == dir + "/.git/hooks" })
            #expect(plan.namespaces == ["user", "mount", "pid", "net", "ipc", "uts", "cgroup"])
            #expect(plan.loopback)
            #expect(plan.capabilities.sorted() == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"])
            #expect(plan.seccomp.count == 1, "the argument checks chained to the allow-list")
            #expect(plan.cwd == dir)
        }
    }

    @Test func rootNeverMapsToHostRoot() throws {
        try withTempDir { dir in
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: request(dir, uid: 0))
            #expect(plan.ids.uidMap == "0 100000 65536\n")
            #expect(plan.ids.gidMap == "0 100000 65536\n")
            #expect(plan.ids.setupUID == 0 && plan.ids.uid == 0)
            let work = try #require(plan.mounts.first { $0.target == dir })
            #expect(work.idmap, "a root-owned writable workdir is idmapped")
            #expect(plan.ids.idmapUIDMap == nil)
        }
    }

    @Test func workdirOwnedByAUserMapsRootToThatUser() throws {
        try withTempDir { dir in
            chown(dir, 1000, 1000)
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: request(dir, uid: 0))
            #expect(plan.ids.uidMap == "0 1000 1\n1 100001 65535\n")
            #expect(!(plan.mounts.first { $0.target == dir }!.idmap))
        }
    }

    @Test func untrustedGetsItsOwnIdmapAndNoCapabilities() throws {
        try withTempDir { dir in
            var profile = Profile(name: "untrusted")
            profile.identity.uid = 1000
            profile.identity.gid = 1000
            profile.capabilities.keep = []
            let plan = try Planner().plan(profile: profile, request: request(dir, uid: 0))
            #expect(plan.ids.uid == 1000 && plan.ids.setupUID == 0)
            #expect(plan.ids.idmapUIDMap == "0 101000 1\n")
            #expect(plan.capabilityMask == 0)
            #expect(!plan.ids.uidMap.contains(" 0 "))
        }
    }

    @Test func unprivilegedMapsOnlyTheCaller() throws {
        try withTempDir { dir in
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: request(dir, uid: 1234))
            #expect(plan.ids.uidMap == "0 1234 1\n")
            #expect(plan.ids.unprivileged)
            #expect(!plan.mounts.contains { $0.idmap })
        }
    }

    @Test func environmentIsScrubbed() throws {
        try withTempDir { dir in
            var req = request(dir, env: ["SECRET_TOKEN": "xyz", "TERM": "xterm", "LC_ALL": "C", "PATH": "/evil"])
            req.env = [("FOO", "1"), ("FOO", "2")]
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: req)
            #expect(!plan.environment.contains { $0.hasPrefix("SECRET_TOKEN=") })
            #expect(plan.environment.contains("TERM=xterm"))
            #expect(plan.environment.contains("LC_ALL=C"))
            #expect(plan.environment.contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
            #expect(plan.environment.contains("FOO=2") && !plan.environment.contains("FOO=1"))
            #expect(plan.environment.contains("HOME=/home/sandbox"))
        }
    }

    @Test func blockedPathsAreFoundAtAnyDepthThroughSymlinksAndHardLinks() throws {
        try withTempDir { dir in
            try writeTestFile(dir + "/.env", "SECRET")
            try writeTestFile(dir + "/.env.local")
            try writeTestFile(dir + "/a/b/c/.env.prod")
            try writeTestFile(dir + "/deep/server.pem")
            try writeTestFile(dir + "/keys/id_ed25519.pub")
            try writeTestFile(dir + "/src/main.swift")
            try writeTestFile(dir + "/secrets/real")
            symlink(dir + "/secrets/real", dir + "/config/.env.link") // dir does not exist: dangling, ignored
            try FileManager.default.createDirectory(atPath: dir + "/config", withIntermediateDirectories: true)
            symlink("../secrets/real", dir + "/config/.env.link")
            link(dir + "/.env", dir + "/notes.txt")
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: request(dir))
            let masked = Set(plan.mounts.filter { $0.kind == .mask }.map(\.target))
            for p in ["/.env", "/.env.local", "/a/b/c/.env.prod", "/deep/server.pem", "/keys/id_ed25519.pub", "/secrets/real", "/notes.txt"] {
                #expect(masked.contains(dir + p), "\(p) must be masked")
            }
            #expect(!masked.contains(dir + "/src/main.swift"))
            #expect(!masked.contains(dir + "/config/.env.link"), "symlinks are not mount targets; their targets are")
        }
    }

    /// A name is any bytes but "/" and NUL. A blocked file whose name is not
    /// UTF-8, holds a newline, or equals another name as a Swift string (NFC
    /// and NFD spellings of "café") is masked by exactly its own bytes; none
    /// of them masks something else (once, a name with a newline masked the
    /// whole workdir).
    @Test func blockedNamesAreMaskedByTheirExactBytes() throws {
        try withTempDir { dir in
            let d = Array(dir.utf8)
            func path(_ rel: [UInt8]) -> [UInt8] { d + [UInt8(ascii: "/")] + rel }
            func create(_ rel: [UInt8], directory: Bool = false) {
                RawPath.withCString(path(rel)) { p in
                    if directory { _ = mkdir(p, 0o755) } else { close(open(p, O_CREAT | O_WRONLY, 0o644)) }
                }
            }
            let latin1Dir: [UInt8] = Array("caf".utf8) + [0xE9]
            let nfcDir: [UInt8] = Array("caf".utf8) + [0xC3, 0xA9]
            let nfdDir: [UInt8] = Array("cafe".utf8) + [0xCC, 0x81]
            for dirName in [latin1Dir, nfcDir, nfdDir, Array("d".utf8)] { create(dirName, directory: true) }
            let secrets: [[UInt8]] = [
                latin1Dir + Array("/.env".utf8),
                nfcDir + Array("/.env".utf8),
                nfdDir + Array("/.env".utf8),
                Array(".env".utf8) + [0xFF],
                Array("d/id_rsa\nx".utf8),
            ]
            for s in secrets { create(s) }
            try writeTestFile(dir + "/plain.txt")

            let plan = try Planner().plan(profile: Profile(name: "worker"), request: request(dir))
            let masks = plan.mounts.filter { $0.kind == .mask }
            let masked = Set(masks.map { $0.rawTarget ?? Array($0.target.utf8) })
            for s in secrets {
                #expect(masked.contains(path(s)), "\(RawPath.display(s)) must be masked")
            }
            #expect(!masked.contains(d) && !masked.contains(d + [UInt8(ascii: "/")]), "the workdir itself is not masked")
            #expect(masked.count == masks.count)
            let latin1 = try #require(masks.first { $0.rawTarget == path(secrets[0]) })
            #expect(latin1.target == dir + "/caf\\xE9/.env", "shown with the byte escaped")
            #expect(masks.first { $0.target == dir + "/" + String(decoding: nfcDir, as: UTF8.self) + "/.env" }?.rawTarget == nil,
                    "a UTF-8 name needs no raw bytes")
        }
    }

    @Test func homePatternsAreMaskedWhereABindExposesThem() throws {
        try withTempDir { dir in
            let home = dir + "/home"
            try writeTestFile(home + "/.ssh/id_rsa")
            try writeTestFile(home + "/.aws/credentials")
            let work = dir + "/work"
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            var req = request(work, home: home)
            req.readOnly = [home + ":/mnt/home"]
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: req)
            let masked = Set(plan.mounts.filter { $0.kind == .mask }.map(\.target))
            #expect(masked.contains("/mnt/home/.ssh"))
            #expect(masked.contains("/mnt/home/.aws"))
        }
    }

    @Test func explorerIsReadOnly() throws {
        try withTempDir { dir in
            var profile = Profile(name: "explorer")
            profile.filesystem.workdir = .readOnly
            profile.filesystem.homeWritable = false
            let plan = try Planner().plan(profile: profile, request: request(dir))
            #expect(plan.mounts.first { $0.target == dir }!.readOnly)
            #expect(plan.mounts.contains { $0.kind == .readOnly && $0.target == "/home/sandbox" })
            #expect(!plan.mounts.contains { $0.kind == .readOnly && $0.target.hasSuffix(".git/hooks") })
        }
    }

    @Test(arguments: [
        (["/bin/true"], "/", "the host's root cannot be the workdir"),
        (["/bin/true"], "/nonexistent/dir", "not an existing directory"),
        ([String](), "/tmp", "no command given"),
    ])
    func badRequestsAreRefused(argv: [String], workdir: String, message: String) {
        var req = request(workdir)
        req.argv = argv
        do {
            _ = try Planner().plan(profile: Profile(name: "worker"), request: req)
            Issue.record("expected an error")
        } catch {
            #expect(error.message.contains(message))
            #expect(error.exitCode == 125)
        }
    }

    @Test func callerBindsComeAfterTheTmpfsMountsTheyMayLieUnder() throws {
        try withTempDir { dir in
            let work = dir + "/w", extra = dir + "/extra"
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: extra, withIntermediateDirectories: true)
            var req = request(work)
            req.readOnly = [extra]
            req.readWrite = [extra + ":/tmp/rw"]
            let plan = try Planner().plan(profile: Profile(name: "worker"), request: req)
            let tmp = try #require(plan.mounts.firstIndex { $0.kind == .tmpfs && $0.target == "/tmp" })
            let ro = try #require(plan.mounts.firstIndex { $0.kind == .bind && $0.target == extra })
            let rw = try #require(plan.mounts.firstIndex { $0.kind == .bind && $0.target == "/tmp/rw" })
            #expect(tmp < ro && tmp < rw, "a bind under /tmp must not be covered by the /tmp tmpfs")
        }
    }

    /// getcwd of a directory whose name is not UTF-8 comes back repaired; the
    /// error says why such a workdir cannot be found.
    @Test func aWorkdirNameThatIsNotUTF8IsExplained() {
        let error = #expect(throws: SandboxError.self) {
            try Planner().plan(profile: Profile(name: "worker"), request: request("/tmp/caf\u{FFFD}-missing"))
        }
        #expect(error?.message.contains("not valid UTF-8") == true, "\(String(describing: error))")
        let plain = #expect(throws: SandboxError.self) {
            try Planner().plan(profile: Profile(name: "worker"), request: request("/tmp/cafe-missing"))
        }
        #expect(plain?.message.contains("UTF-8") == false)
    }

    @Test func missingReadWriteBindIsAnError() throws {
        try withTempDir { dir in
            var req = request(dir)
            req.readWrite = ["/nonexistent/cache"]
            #expect(throws: SandboxError.self) { try Planner().plan(profile: Profile(name: "worker"), request: req) }
        }
    }

    @Test func translateUsesTheMostSpecificBind() {
        let b = BlockedPaths(binds: [("/usr", "/usr"), ("/home/u", "/mnt/h"), ("/home/u/w", "/work")], walkRoots: [], workdir: "/home/u/w", hostHome: "/home/u")
        func translate(_ path: String) -> String? { b.translate(Array(path.utf8)).map { String(decoding: $0, as: UTF8.self) } }
        #expect(translate("/home/u/w/.env") == "/work/.env")
        #expect(translate("/home/u/.ssh") == "/mnt/h/.ssh")
        #expect(translate("/etc/shadow") == nil)
        #expect(translate("/usrx/y") == nil)
    }
}
