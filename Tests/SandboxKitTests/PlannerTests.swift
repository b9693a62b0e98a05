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
            #expect(plan.seccomp.count == 2)
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

    @Test func missingReadWriteBindIsAnError() throws {
        try withTempDir { dir in
            var req = request(dir)
            req.readWrite = ["/nonexistent/cache"]
            #expect(throws: SandboxError.self) { try Planner().plan(profile: Profile(name: "worker"), request: req) }
        }
    }

    @Test func translateUsesTheMostSpecificBind() {
        let b = BlockedPaths(binds: [("/usr", "/usr"), ("/home/u", "/mnt/h"), ("/home/u/w", "/work")], walkRoots: [], workdir: "/home/u/w", hostHome: "/home/u")
        #expect(b.translate("/home/u/w/.env") == "/work/.env")
        #expect(b.translate("/home/u/.ssh") == "/mnt/h/.ssh")
        #expect(b.translate("/etc/shadow") == nil)
        #expect(b.translate("/usrx/y") == nil)
    }
}
