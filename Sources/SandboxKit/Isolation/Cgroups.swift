import CSandbox
import Glibc

/// Per-sandbox cgroups: created with the profile's limits (v2 before the
/// clone, which starts pid 1 inside; v1 while pid 1 builds the root, and the
/// command moves itself in first thing), read for the report, removed
/// afterwards (and by the janitor if sandboxd itself is killed).
///
/// cgroup v2 is used where the unified hierarchy has the controllers;
/// otherwise cgroup v1 (memory, pids, cpu each in their own hierarchy).
/// Each sandbox's group is created below sandboxd's own group, so a
/// delegated or nested sandboxd stays within what it was given.
public struct CgroupSet: Sendable {
    public enum Version: String, Sendable { case v1, v2 }

    public let version: Version
    /// One directory for v2; one per controller for v1 (memory, pids, then cpu).
    public private(set) var directories: [String]
    /// v1: each directory's `tasks` file, open for the sandbox's command to move itself in
    /// (pid 1 stays out: see DESIGN "Pid 1's own memory").
    /// v2: the directory itself, for clone3(CLONE_INTO_CGROUP).
    public private(set) var joinFDs: [Int32]

    /// What this host offers, found by reading /proc/self/cgroup and /proc/self/mountinfo.
    public struct Layout: Sendable, Equatable {
        public var version: Version
        /// For v2: the directory of sandboxd's own group. For v1: controller -> sandboxd's group directory.
        public var v2Base: String?
        public var v1Bases: [String: String]
    }

    /// Finds where sandboxd's own groups are, per controller: its membership
    /// from /proc/self/cgroup, the hierarchies' mount points where systemd
    /// and cgroupfs-mount put them (confirmed by statfs), else from
    /// /proc/self/mountinfo, which costs ~0.1 ms more to read and parse.
    /// Both ways give the same answer (`conventional: false` skips the first, for tests).
    public static func detect(conventional: Bool = true) -> Layout? {
        guard let selfCgroup = readSmallBytes("/proc/self/cgroup") else { return nil }
        let member = Membership(selfCgroup)
        if conventional, let mounts = Mounts.conventional(for: member) { return choose(mounts, member) }
        guard let mountinfo = readSmallBytes("/proc/self/mountinfo") else { return nil }
        return choose(Mounts(mountinfo: mountinfo), member)
    }

    /// v2 where the unified hierarchy has memory and pids; else v1 where it has both.
    private static func choose(_ mounts: Mounts, _ member: Membership) -> Layout? {
        if let mount = mounts.v2, let rel = member.v2Path {
            let base = join(mount, rel)
            let controllers = readSmallFile(join(base, "cgroup.controllers"))?.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init) ?? []
            if controllers.contains("memory") && controllers.contains("pids") {
                return Layout(version: .v2, v2Base: base, v1Bases: [:])
            }
        }
        var bases: [String: String] = [:]
        for c in controllers {
            if let m = mounts.v1[c], let rel = member.v1Paths[c] { bases[c] = join(m, rel) }
        }
        if bases["memory"] != nil && bases["pids"] != nil { return Layout(version: .v1, v2Base: nil, v1Bases: bases) }
        return nil
    }

    /// The v1 controllers sandboxd uses.
    private static let controllers = ["memory", "pids", "cpu"]

    /// sandboxd's groups, from /proc/self/cgroup: `HIERARCHY-ID:CONTROLLER,...:PATH`.
    /// Parsed as bytes: this runs on every launch, and String splitting cost ~0.3 ms.
    private struct Membership {
        var v2Path: String?
        var v1Paths: [String: String] = [:]

        init(_ bytes: [UInt8]) {
            for line in lines(bytes) {
                guard let first = line.firstIndex(of: UInt8(ascii: ":")),
                      let second = line[(first + 1)...].firstIndex(of: UInt8(ascii: ":")) else { continue }
                let path = String(decoding: line[(second + 1)...], as: UTF8.self)
                if line[..<first].elementsEqual("0".utf8) { v2Path = path }
                for c in fields(line[(first + 1)..<second], separator: UInt8(ascii: ",")) {
                    v1Paths[String(decoding: c, as: UTF8.self)] = path
                }
            }
        }
    }

    /// Mount points: the unified hierarchy's, and each v1 controller's.
    private struct Mounts {
        var v2: String?
        var v1: [String: String] = [:]

        /// From /proc/self/mountinfo: the first cgroup2 mount, and the first
        /// cgroup mount carrying each controller.
        init(mountinfo: [UInt8]) {
            for line in lines(mountinfo) {
                // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
                let words = fields(line, separator: UInt8(ascii: " "))
                guard let dash = words.firstIndex(where: { $0.elementsEqual("-".utf8) }), dash >= 5, words.count >= dash + 4 else { continue }
                let fsType = words[dash + 1]
                if fsType.elementsEqual("cgroup2".utf8) {
                    v2 = v2 ?? String(decoding: words[4], as: UTF8.self)
                } else if fsType.elementsEqual("cgroup".utf8) {
                    for option in fields(words[dash + 3], separator: UInt8(ascii: ",")) {
                        let name = String(decoding: option, as: UTF8.self)
                        if controllers.contains(name), v1[name] == nil { v1[name] = String(decoding: words[4], as: UTF8.self) }
                    }
                }
            }
        }

        private init() {}

        /// The conventional places, each confirmed to be a cgroup mount of the
        /// right version: the unified hierarchy at /sys/fs/cgroup (pure v2) or
        /// /sys/fs/cgroup/unified (hybrid), controller C at /sys/fs/cgroup/C.
        /// nil when a hierarchy sandboxd belongs to is not there: mountinfo decides then.
        static func conventional(for member: Membership) -> Mounts? {
            var m = Mounts()
            if member.v2Path != nil {
                guard let v2 = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].first(where: { fsMagic($0) == cgroup2Magic }) else { return nil }
                m.v2 = v2
            }
            for c in controllers where member.v1Paths[c] != nil {
                let path = "/sys/fs/cgroup/" + c
                guard fsMagic(path) == cgroup1Magic else { return nil }
                m.v1[c] = path
            }
            return m
        }

        private static let cgroup1Magic: Int64 = 0x27e0eb    // CGROUP_SUPER_MAGIC
        private static let cgroup2Magic: Int64 = 0x63677270  // CGROUP2_SUPER_MAGIC

        private static func fsMagic(_ path: String) -> Int64 { sbx_fs_magic(path) }
    }

    /// Creates the groups (memory and pids, and cpu if asked) without limits
    /// and opens what the sandbox joins them through. On any failure nothing
    /// is left behind.
    public static func make(name: String, layout: Layout, cpu: Bool) throws(SandboxError) -> CgroupSet {
        var set = CgroupSet(version: layout.version, directories: [], joinFDs: [])
        do throws(SandboxError) {
            for dir in try directories(name: name, layout: layout, cpu: cpu) { try set.add(dir) }
        } catch {
            set.remove()
            throw error
        }
        return set
    }

    /// The directories `make` creates, in its order: the janitor is told them first.
    public static func directories(name: String, layout: Layout, cpu: Bool) throws(SandboxError) -> [String] {
        switch layout.version {
        case .v2: return [join(layout.v2Base!, name)]
        case .v1:
            var dirs: [String] = []
            for c in cpu ? ["memory", "pids", "cpu"] : ["memory", "pids"] {
                guard let base = layout.v1Bases[c] else {
                    throw SandboxError("cgroups: no cgroup v1 '\(c)' hierarchy is mounted; mount it or boot with cgroup v2")
                }
                dirs.append(join(base, name))
            }
            return dirs
        }
    }

    /// Writes `limits` (a CPU limit on v1 needs the group `make` was asked for).
    public func apply(_ limits: Profile.Limits) throws(SandboxError) {
        switch version {
        case .v2:
            let dir = directories[0]
            if limits.memory > 0 {
                try CgroupSet.write(CgroupSet.join(dir, "memory.max"), String(limits.memory))
                try? CgroupSet.write(CgroupSet.join(dir, "memory.swap.max"), "0")
            }
            if limits.pids > 0 { try CgroupSet.write(CgroupSet.join(dir, "pids.max"), String(limits.pids)) }
            if limits.cpus > 0 { try CgroupSet.write(CgroupSet.join(dir, "cpu.max"), "\(Int(limits.cpus * 100_000)) 100000") }
        case .v1:
            let memory = directories[0], pids = directories[1]
            if limits.memory > 0 {
                try CgroupSet.write(CgroupSet.join(memory, "memory.limit_in_bytes"), String(limits.memory))
                // Without swap accounting this file is absent; the host has no swap to escape to then.
                if access(CgroupSet.join(memory, "memory.memsw.limit_in_bytes"), F_OK) == 0 {
                    try CgroupSet.write(CgroupSet.join(memory, "memory.memsw.limit_in_bytes"), String(limits.memory))
                }
            }
            if limits.pids > 0 { try CgroupSet.write(CgroupSet.join(pids, "pids.max"), String(limits.pids)) }
            if limits.cpus > 0 {
                guard directories.count > 2 else { throw SandboxError("cgroups: a CPU limit needs the cpu group; it was not made") }
                try CgroupSet.write(CgroupSet.join(directories[2], "cpu.cfs_period_us"), "100000")
                try CgroupSet.write(CgroupSet.join(directories[2], "cpu.cfs_quota_us"), String(Int(limits.cpus * 100_000)))
            }
        }
    }

    /// Makes one group and opens what the sandbox joins it through.
    /// Why `tasks` and not `cgroup.procs` on v1: moving another process takes
    /// the kernel's global threadgroup lock and waits for an RCU grace period
    /// (~10 ms); a single-threaded task moving itself does not.
    private mutating func add(_ dir: String) throws(SandboxError) {
        try CgroupSet.makeDir(dir)
        directories.append(dir)
        let path = version == .v1 ? CgroupSet.join(dir, "tasks") : dir
        let fd = version == .v1 ? open(path, O_WRONLY | O_CLOEXEC) : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError("cgroups: cannot open \(path): \(errnoString())") }
        joinFDs.append(fd)
    }

    /// Resource figures for the report, read before removal.
    public struct Usage: Sendable, Equatable {
        public var peakMemory: UInt64?
        public var oomKilled: Bool
    }

    public func usage() -> Usage {
        guard let mem = directories.first else { return Usage(peakMemory: nil, oomKilled: false) }
        switch version {
        case .v2:
            let peak = readSmallFile(CgroupSet.join(mem, "memory.peak")).flatMap { UInt64($0.trimmingWhitespace()) }
            let events = readSmallFile(CgroupSet.join(mem, "memory.events")) ?? ""
            return Usage(peakMemory: peak, oomKilled: CgroupSet.counter(events, "oom_kill") > 0)
        case .v1:
            let peak = readSmallFile(CgroupSet.join(mem, "memory.max_usage_in_bytes")).flatMap { UInt64($0.trimmingWhitespace()) }
            let control = readSmallFile(CgroupSet.join(mem, "memory.oom_control")) ?? ""
            return Usage(peakMemory: peak, oomKilled: CgroupSet.counter(control, "oom_kill") > 0)
        }
    }

    /// Closes the join descriptors and removes the directories. The sandbox's
    /// processes are gone once its pid 1 has been reaped, but the kernel may
    /// take a moment to release an emptied group; retry briefly.
    public func remove() {
        closeJoinFDs()
        for d in directories.reversed() {
            for attempt in 0..<200 {
                if rmdir(d) == 0 || errno == ENOENT { break }
                if attempt == 199 { break }
                var ts = timespec(tv_sec: 0, tv_nsec: 1_000_000)
                nanosleep(&ts, nil)
            }
        }
    }

    /// Closes what the sandbox joined the groups through (`remove` does too).
    public func closeJoinFDs() {
        for fd in joinFDs { close(fd) }
    }

    static func counter(_ text: String, _ key: String) -> UInt64 {
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: " ")
            if kv.count == 2 && kv[0] == key { return UInt64(kv[1]) ?? 0 }
        }
        return 0
    }

    private static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        fields(bytes[...], separator: UInt8(ascii: "\n"))
    }

    /// The non-empty runs of `bytes` between separators.
    private static func fields(_ bytes: ArraySlice<UInt8>, separator: UInt8) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var start = bytes.startIndex
        for i in bytes.indices where bytes[i] == separator {
            if i > start { out.append(bytes[start..<i]) }
            start = i + 1
        }
        if start < bytes.endIndex { out.append(bytes[start...]) }
        return out
    }

    static func join(_ a: String, _ b: String) -> String {
        if b.isEmpty || b == "/" { return a }
        return a.hasSuffix("/") ? a + (b.hasPrefix("/") ? String(b.dropFirst()) : b) : a + (b.hasPrefix("/") ? b : "/" + b)
    }

    private static func makeDir(_ path: String) throws(SandboxError) {
        guard mkdir(path, 0o755) == 0 else {
            if errno == EEXIST {
                // Names are per pid: a sandboxd of another pid namespace in the same cgroup, or a group left behind.
                throw SandboxError("cgroups: \(path) already exists: another sandboxd with pid \(getpid()) in another pid namespace uses this cgroup, or a janitor was killed before removing it; if no process is in it (its cgroup.procs is empty), remove it with rmdir")
            }
            throw SandboxError("cgroups: cannot create \(path): \(errnoString()); sandboxd needs write access to its own cgroup (run as root, or under a delegated cgroup)")
        }
    }

    private static func write(_ path: String, _ value: String) throws(SandboxError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError("cgroups: cannot open \(path): \(errnoString())") }
        defer { close(fd) }
        let ok = value.withCString { p in Glibc.write(fd, p, strlen(p)) == strlen(p) }
        guard ok else { throw SandboxError("cgroups: cannot write '\(value)' to \(path): \(errnoString())") }
    }
}
