import Testing
@testable import SandboxKit

@Suite("Support")
struct SupportTests {
    @Test func jsonEscapesAndKeepsKeyOrder() {
        let j = JSON.object([("b", .string("a\"b\\c\n\u{01}")), ("a", .array([.int(1), .bool(true), .null, .double(1.5)]))])
        #expect(j.rendered(pretty: false) == #"{"b":"a\"b\\c\n\u0001","a":[1,true,null,1.5]}"#)
    }

    @Test func cgroupCountersParse() {
        #expect(CgroupSet.counter("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill") == 3)
        #expect(CgroupSet.counter("low 0\nhigh 0\n", "oom_kill") == 0)
        #expect(CgroupSet.join("/sys/fs/cgroup/memory", "/a/b") == "/sys/fs/cgroup/memory/a/b")
        #expect(CgroupSet.join("/sys/fs/cgroup/pids", "/") == "/sys/fs/cgroup/pids")
    }

    /// The statfs shortcut must find the same groups as /proc/self/mountinfo,
    /// on whichever layout this host has (v1 here, v2 on most CI hosts).
    @Test func cgroupLayoutIsTheSameWithOrWithoutMountinfo() throws {
        let fromMountinfo = try #require(CgroupSet.detect(conventional: false), "this host has no usable cgroup hierarchy")
        #expect(CgroupSet.detect() == fromMountinfo)
        switch fromMountinfo.version {
        case .v1: #expect(fromMountinfo.v1Bases["memory"] != nil && fromMountinfo.v1Bases["pids"] != nil)
        case .v2: #expect(fromMountinfo.v2Base != nil)
        }
    }

    @Test func capabilityNamesRoundTrip() throws {
        let mask = try Capabilities.mask(["CHOWN", "cap_kill", "SETUID"])
        #expect(mask == (1 << 0) | (1 << 5) | (1 << 7))
        #expect(Capabilities.names(mask) == ["CHOWN", "KILL", "SETUID"])
        #expect(throws: SandboxError.self) { try Capabilities.mask(["NOT_A_CAP"]) }
    }

    @Test func kernelVersionsParse() {
        #expect(HostCheck.version("6.18.44-fc-v657") == (6, 18))
        #expect(HostCheck.version("5.4.0") == (5, 4))
    }
}
