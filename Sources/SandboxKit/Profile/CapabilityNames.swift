/// Linux capability names, for validating `[capabilities] keep`.
enum CapabilityNames {
    /// Every capability in linux/capability.h up to CAP_LAST_CAP (40, CHECKPOINT_RESTORE), without `CAP_`.
    static let known: Set<String> = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ]

    /// "cap_chown", "CAP_CHOWN", "chown" → "CHOWN".
    static func normalize(_ name: String) -> String {
        let upper = name.uppercased()
        return upper.hasPrefix("CAP_") ? String(upper.dropFirst(4)) : upper
    }

    /// Why a capability is in `Profile.Capabilities.forbidden`, for the validation error.
    /// Even inside a user namespace these widen the kernel attack surface or reach outside the room.
    static func whyForbidden(_ name: String) -> String {
        switch name {
        case "SYS_ADMIN": "it allows mount, namespace and many kernel interfaces that are the classic container escapes"
        case "NET_ADMIN": "it allows reconfiguring network interfaces, routes and firewall rules"
        case "NET_RAW": "it allows raw and packet sockets (spoofing, sniffing)"
        case "SYS_PTRACE": "it allows tracing and rewriting other processes, bypassing the seccomp filter"
        case "SYS_MODULE": "it allows loading kernel modules"
        case "SYS_RAWIO": "it allows raw I/O ports and device memory"
        case "SYS_BOOT": "it allows rebooting and kexec"
        case "SYS_TIME": "it allows setting the system clock"
        case "MKNOD": "it allows creating device nodes"
        case "SETFCAP": "it allows granting file capabilities that survive outside the sandbox"
        case "DAC_READ_SEARCH": "it allows open_by_handle_at, which reads files outside the bind mounts"
        case "BPF", "PERFMON": "it exposes eBPF and perf, a large kernel attack surface"
        case "MAC_ADMIN", "MAC_OVERRIDE": "it allows changing or bypassing the LSM (AppArmor, SELinux) policy"
        case "SYSLOG": "it allows reading kernel logs and addresses"
        case "AUDIT_CONTROL", "AUDIT_READ": "it allows controlling or reading the host audit log"
        case "WAKE_ALARM", "BLOCK_SUSPEND": "it affects host power management"
        case "CHECKPOINT_RESTORE": "it allows choosing PIDs and other checkpoint/restore interfaces"
        case "LINUX_IMMUTABLE": "it allows setting immutable and append-only flags on host files"
        case "SYS_RESOURCE": "it allows raising resource limits past the profile's [limits]"
        case "SYS_PACCT": "it allows switching process accounting"
        case "SYS_NICE": "it allows raising priorities and real-time scheduling, starving the host"
        case "SYS_TTY_CONFIG": "it allows reconfiguring terminals"
        case "LEASE": "it allows file leases that can stall host processes"
        case "IPC_LOCK": "it allows locking memory past the limits"
        case "IPC_OWNER": "it bypasses permission checks on IPC objects"
        default: "sandboxd never grants it"
        }
    }
}
