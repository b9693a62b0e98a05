import CSandbox
import Glibc

/// What this host offers sandboxd, each item with how to fix it when missing.
public struct HostCheck {
    public struct Item: Sendable, Equatable {
        public var name: String
        public var ok: Bool
        /// What was found.
        public var detail: String
        /// How to enable it, when `ok` is false.
        public var fix: String?
        /// Whether sandboxd refuses to run without it (fail closed).
        public var required: Bool
    }

    public init() {}

    public func run() -> [Item] {
        [kernel(), userNamespaces(), seccomp(), landlock(), cgroups(), idmappedMounts(), newMountAPI()]
    }

    func kernel() -> Item {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        let (major, minor) = HostCheck.version(release)
        let ok = (major, minor) >= (5, 12)
        return Item(name: "kernel", ok: ok, detail: release,
                    fix: ok ? nil : "Linux 5.12 or newer is needed (clone3, openat2, close_range, mount_setattr)", required: true)
    }

    func userNamespaces() -> Item {
        let max = readSmallFile("/proc/sys/user/max_user_namespaces")?.trimmingWhitespace() ?? "?"
        let unpriv = readSmallFile("/proc/sys/kernel/unprivileged_userns_clone")?.trimmingWhitespace()
        let apparmor = readSmallFile("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")?.trimmingWhitespace()
        var detail = "max_user_namespaces=\(max)"
        if let unpriv { detail += ", unprivileged_userns_clone=\(unpriv)" }
        if let apparmor { detail += ", apparmor_restrict_unprivileged_userns=\(apparmor)" }
        var fix: String? = nil
        var ok = max != "0"
        if !ok { fix = "sysctl -w user.max_user_namespaces=15000" }
        if geteuid() != 0 {
            if unpriv == "0" { ok = false; fix = "sysctl -w kernel.unprivileged_userns_clone=1 (or run sandboxd as root)" }
            if apparmor == "1" { ok = false; fix = "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing userns for sandboxd" }
        }
        return Item(name: "user namespaces", ok: ok, detail: detail, fix: fix, required: true)
    }

    func seccomp() -> Item {
        let actions = readSmallFile("/proc/sys/kernel/seccomp/actions_avail")?.trimmingWhitespace()
        let ok = actions?.contains("errno") == true && actions?.contains("kill_process") == true
        return Item(name: "seccomp filters", ok: ok, detail: actions.map { "actions: \($0)" } ?? "no /proc/sys/kernel/seccomp",
                    fix: ok ? nil : "a kernel built with CONFIG_SECCOMP_FILTER=y", required: true)
    }

    func landlock() -> Item {
        let abi = sbx_landlock_abi()
        return Item(name: "landlock", ok: abi > 0, detail: abi > 0 ? "ABI \(abi)" : "unavailable (\(errnoString()))",
                    fix: abi > 0 ? nil : "optional; boot with lsm=...,landlock and CONFIG_SECURITY_LANDLOCK=y", required: false)
    }

    func cgroups() -> Item {
        guard let layout = CgroupSet.detect() else {
            return Item(name: "cgroups", ok: false, detail: "no cgroup v2 with memory+pids, no cgroup v1 memory and pids",
                        fix: "mount cgroup2 at /sys/fs/cgroup with the memory and pids controllers enabled", required: true)
        }
        switch layout.version {
        case .v2:
            let controllers = readSmallFile(CgroupSet.join(layout.v2Base!, "cgroup.controllers"))?.trimmingWhitespace() ?? ""
            return Item(name: "cgroups", ok: true, detail: "v2 at \(layout.v2Base!) (\(controllers))", fix: nil, required: true)
        case .v1:
            let names = layout.v1Bases.keys.sorted().joined(separator: ", ")
            let cpu = layout.v1Bases["cpu"] == nil ? "; no cpu controller: `cpus` limits cannot be applied" : ""
            return Item(name: "cgroups", ok: true, detail: "v1 (\(names))\(cpu)", fix: nil, required: true)
        }
    }

    func idmappedMounts() -> Item {
        let (major, minor) = HostCheck.version(kernel().detail)
        let ok = (major, minor) >= (5, 12)
        let who = geteuid() == 0 ? "as root: workdirs owned by root are idmapped so files keep their owner" : "not root: files are written as your own uid, no idmapping needed"
        return Item(name: "idmapped mounts", ok: ok, detail: ok ? "supported by the kernel; \(who)" : "kernel too old",
                    fix: ok ? nil : "Linux 5.12+, and a filesystem that supports them (ext4, xfs, btrfs, tmpfs 6.3+)", required: geteuid() == 0)
    }

    func newMountAPI() -> Item {
        let fd = sbx_probe_open_tree()
        return Item(name: "mount API (open_tree, move_mount, mount_setattr)", ok: fd == 0,
                    detail: fd == 0 ? "available" : "unavailable (\(errnoString()))",
                    fix: fd == 0 ? nil : "Linux 5.12 or newer", required: true)
    }

    static func version(_ release: String) -> (Int, Int) {
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
    }
}
