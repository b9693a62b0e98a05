/// The syscall policy, as data. `SeccompCompiler` turns it into BPF.
///
/// Shape: an allow-list that starts from Docker's default profile. Syscalls
/// nobody listed fail with ENOSYS, so programs probing for new syscalls
/// (clone3, for instance) fall back cleanly. The dangerous groups the sandbox
/// must refuse are listed explicitly and fail with EPERM, so a denial reads as
/// "not permitted" rather than "not implemented". Foreign ABIs (ia32 via
/// `int 0x80`, x32) kill the process.
public struct SeccompPolicy: Sendable, Hashable {
    /// Allowed without conditions.
    public var allow: Set<String>
    /// Refused with EPERM.
    public var deny: Set<String>

    public init(allow: Set<String>, deny: Set<String>) {
        self.allow = allow
        self.deny = deny
    }

    /// The built-in policy with a profile's adjustments applied: `profile.deny`
    /// entries move to the deny list, `profile.allow` entries leave it.
    public static func forProfile(_ s: Profile.Seccomp) -> SeccompPolicy {
        var p = SeccompPolicy(allow: dockerAllow, deny: refused)
        for name in s.deny {
            p.allow.remove(name)
            p.deny.insert(name)
        }
        for name in s.allow {
            p.deny.remove(name)
            if !conditional.contains(name) { p.allow.insert(name) }
        }
        return p
    }

    /// Syscalls with argument rules in the compiler (clone, ioctl, personality, clone3);
    /// never in `allow` as a whole.
    public static let conditional: Set<String> = ["clone", "clone3", "ioctl", "personality"]

    /// The groups sandboxd refuses on top of Docker's profile (EPERM).
    public static let refused: Set<String> = [
        // mounts and namespaces: the sandbox's view of the world is fixed at launch
        "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns",
        "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
        // kernel keyrings, bpf, perf, userfaultfd, io_uring: large attack surface
        "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
        "io_uring_setup", "io_uring_enter", "io_uring_register",
        // the machine itself
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
        "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "lookup_dcookie", "syslog",
        "vhangup", "iopl", "ioperm", "settimeofday", "stime", "clock_settime", "clock_settime64",
        "clock_adjtime", "clock_adjtime64", "adjtimex", "nfsservctl", "uselib", "_sysctl",
        "sethostname", "setdomainname",
        // file handles reach inodes outside the mount tree
        "open_by_handle_at", "name_to_handle_at",
        // other processes' memory
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
        "fanotify_init",
    ]

    /// Docker's default allow-list (moby profiles/seccomp/default.json), less
    /// what `refused` takes away and the conditional syscalls.
    public static let dockerAllow: Set<String> = [
        "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat", "capget", "capset",
        "chdir", "chmod", "chown", "clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range", "connect", "copy_file_range", "creat",
        "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit",
        "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark", "fchdir", "fchmod",
        "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock",
        "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex", "futex_requeue",
        "futex_wait", "futex_waitv", "futex_wake", "futimesat", "get_mempolicy", "get_robust_list", "get_thread_area",
        "getcpu", "getcwd", "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer",
        "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
        "getresuid", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday",
        "getuid", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
        "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit", "ioprio_get",
        "ioprio_set", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
        "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr",
        "lstat", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
        "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "modify_ldt", "mprotect",
        "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap",
        "msgctl", "msgget", "msgrcv", "msgsnd", "mseal", "msync", "munlock", "munlockall", "munmap", "nanosleep",
        "newfstatat", "open", "openat", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2",
        "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2",
        "prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
        "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr",
        "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
        "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
        "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity",
        "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
        "semget", "semop", "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
        "set_thread_area", "set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups", "setitimer",
        "setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid", "setrlimit", "setsid",
        "setsockopt", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
        "signalfd", "signalfd4", "socket", "socketpair", "splice", "stat", "statfs", "statx", "symlink",
        "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
        "timer_delete", "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime",
        "timerfd_settime", "times", "tkill", "truncate", "umask", "uname", "unlink", "unlinkat", "utime",
        "utimensat", "utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
    ]

    /// The `clone` flag bits that create namespaces; clone with any of them is refused.
    public static let namespaceCloneFlags: [UInt64] = [
        0x0002_0000, // CLONE_NEWNS
        0x0200_0000, // CLONE_NEWCGROUP
        0x0400_0000, // CLONE_NEWUTS
        0x0800_0000, // CLONE_NEWIPC
        0x1000_0000, // CLONE_NEWUSER
        0x2000_0000, // CLONE_NEWPID
        0x4000_0000, // CLONE_NEWNET
        0x0000_0080, // CLONE_NEWTIME
    ]
    /// ioctl requests refused (matched on the low 32 bits, as the kernel does).
    public static let refusedIoctls: [UInt64] = [
        0x5412, // TIOCSTI: push characters into a terminal's input
        0x541C, // TIOCLINUX: console selection paste, same effect
    ]
    /// Mode bits a file may not be given: a setuid or setgid file written into a
    /// bind (the workdir is idmapped, so the sandbox's root is the workdir
    /// owner, possibly host root) would run with those privileges on the host.
    public static let refusedModeBits: [UInt64] = [0o4000, 0o2000] // S_ISUID, S_ISGID

    /// Where each syscall carries the new mode (argument index), and for the
    /// open family the flags argument whose O_CREAT/O_TMPFILE makes the mode count.
    public static let modeArguments: [(name: String, mode: UInt32, flags: UInt32?)] = [
        ("chmod", 1, nil), ("fchmod", 1, nil), ("fchmodat", 2, nil), ("fchmodat2", 2, nil),
        ("creat", 1, nil), ("mknod", 1, nil), ("mknodat", 2, nil),
        ("open", 2, 1), ("openat", 3, 2),
    ]
    static let openCreateFlags: [UInt64] = [0o100, 0o20000000] // O_CREAT, __O_TMPFILE

    /// personality() values Docker permits: Linux defaults, and the "query" value.
    public static let personalities: [UInt64] = [0x0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff]
}
