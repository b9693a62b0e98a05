/// A sandbox policy, fully resolved (after `extends`) and validated.
///
/// Profiles are declarative: every field here has a TOML key of the same
/// name (snake_case) in `profiles/*.toml`, documented in docs/PROFILES.md. The
/// planner turns a `Profile` plus an `ExecRequest` into a `LaunchPlan`;
/// nothing else reads profiles, so policy decisions live in one place.
public struct Profile: Sendable, Equatable {
    /// Name the profile was found under (file stem, or the embedded name).
    public var name: String
    public var description: String
    /// Where the profile came from, for messages ("profiles/worker.toml", "embedded:worker").
    public var source: String

    public var identity: Identity
    public var filesystem: Filesystem
    public var network: Network
    public var capabilities: Capabilities
    public var seccomp: Seccomp
    public var limits: Limits
    public var environment: Environment
    public var gate: Gate

    public init(
        name: String, description: String = "", source: String = "",
        identity: Identity = .init(), filesystem: Filesystem = .init(), network: Network = .init(),
        capabilities: Capabilities = .init(), seccomp: Seccomp = .init(), limits: Limits = .init(),
        environment: Environment = .init(), gate: Gate = .init()
    ) {
        self.name = name
        self.description = description
        self.source = source
        self.identity = identity
        self.filesystem = filesystem
        self.network = network
        self.capabilities = capabilities
        self.seccomp = seccomp
        self.limits = limits
        self.environment = environment
        self.gate = gate
    }

    /// `[identity]`: who the command runs as *inside* the sandbox.
    public struct Identity: Sendable, Equatable {
        /// uid inside the user namespace (0 = root inside, never root outside).
        public var uid: UInt32 = 0
        public var gid: UInt32 = 0
        /// Hostname inside the private UTS namespace.
        public var hostname: String = "sandbox"
        public init(uid: UInt32 = 0, gid: UInt32 = 0, hostname: String = "sandbox") {
            self.uid = uid
            self.gid = gid
            self.hostname = hostname
        }
    }

    /// `[filesystem]`: how the sandbox's root is assembled.
    public struct Filesystem: Sendable, Equatable {
        public enum WorkdirMode: String, Sendable, Equatable { case readWrite = "rw", readOnly = "ro" }
        /// Host paths bound read-only at the same place ("SRC" or "SRC:DEST"). Missing sources are skipped.
        public var readOnly: [String] = ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt"]
        /// Host paths bound read-write ("SRC" or "SRC:DEST"). A missing source is an error.
        public var readWrite: [String] = []
        /// Host paths hidden inside the read-only binds (/etc/shadow and friends): masked even if no pattern matches.
        public var hide: [String] = ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private"]
        /// Whether the workdir is writable (`workdir = "rw"`) or read-only (`"ro"`).
        public var workdir: WorkdirMode = .readWrite
        /// Size cap of the private /tmp tmpfs, bytes (`tmp_size = "1GiB"`).
        public var tmpSize: UInt64 = 1 << 30
        /// Size cap of the private, empty, writable HOME tmpfs, bytes.
        public var homeSize: UInt64 = 1 << 30
        /// HOME path inside the sandbox.
        public var home: String = "/home/sandbox"
        /// Whether HOME is writable (`home_writable = false` mounts it read-only, so /tmp is
        /// the only writable place when the workdir is read-only too).
        public var homeWritable: Bool = true
        /// Blocked-path patterns (`blocked = [...]`): masked everywhere they occur in binds.
        /// `~/` is the invoking user's home on the host; `**/` matches at any depth of the workdir.
        public var blocked: [String] = Filesystem.defaultBlocked
        /// Protected-path patterns relative to the workdir: read-only even when the workdir is writable.
        public var protected: [String] = [".git/hooks", ".git/config"]
        public init() {}

        public static let defaultBlocked = [
            ".env", ".env.*", "**/.env*", "~/.ssh", "~/.aws", "~/.gnupg", "~/.netrc", "~/.git-credentials",
            "~/.docker/config.json", "~/.config/gcloud", "**/*.pem", "**/id_rsa*", "**/id_ed25519*",
            "**/.npmrc", "**/.pypirc",
        ]
    }

    /// `[network]`.
    public struct Network: Sendable, Equatable {
        public enum Mode: String, Sendable, Equatable {
            /// A private network namespace with only `lo` up.
            case loopback
            /// A private network namespace with no interface up at all.
            case none
        }
        public var mode: Mode = .loopback
        public init(mode: Mode = .loopback) { self.mode = mode }
    }

    /// `[capabilities]`: the capabilities kept inside the user namespace (names without `CAP_`).
    public struct Capabilities: Sendable, Equatable {
        public var keep: [String] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL"]
        public init(keep: [String] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL"]) {
            self.keep = keep
        }
        /// Capabilities no profile may keep; validation rejects them with the file and line.
        public static let forbidden: Set<String> = [
            "SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_MODULE", "SYS_RAWIO", "SYS_BOOT",
            "SYS_TIME", "MKNOD", "SETFCAP", "DAC_READ_SEARCH", "BPF", "PERFMON", "MAC_ADMIN",
            "MAC_OVERRIDE", "SYSLOG", "AUDIT_CONTROL", "AUDIT_READ", "WAKE_ALARM", "BLOCK_SUSPEND",
            "CHECKPOINT_RESTORE", "LINUX_IMMUTABLE", "SYS_RESOURCE", "SYS_PACCT", "SYS_NICE", "SYS_TTY_CONFIG", "LEASE", "IPC_LOCK", "IPC_OWNER",
        ]
    }

    /// `[seccomp]`: adjustments to the built-in default filter.
    public struct Seccomp: Sendable, Equatable {
        /// Extra syscalls refused with EPERM.
        public var deny: [String] = []
        /// Syscalls taken off the built-in deny list (they become allowed).
        public var allow: [String] = []
        public init(deny: [String] = [], allow: [String] = []) {
            self.deny = deny
            self.allow = allow
        }
    }

    /// `[limits]`: cgroup and rlimit caps. 0 means "no limit" for every field.
    public struct Limits: Sendable, Equatable {
        /// Memory cap in bytes (cgroup memory controller).
        public var memory: UInt64 = 4 << 30
        /// Maximum number of tasks (cgroup pids controller).
        public var pids: UInt64 = 1024
        /// CPU cap in cores, e.g. 1.5 (cgroup cpu controller). 0 = unlimited.
        public var cpus: Double = 0
        /// RLIMIT_NOFILE.
        public var openFiles: UInt64 = 4096
        /// RLIMIT_FSIZE, bytes.
        public var fileSize: UInt64 = 16 << 30
        /// Wall-clock timeout in seconds; `--timeout` overrides. 0 = none.
        public var timeout: Double = 0
        public init() {}
    }

    /// `[environment]`: the scrubbed environment.
    public struct Environment: Sendable, Equatable {
        /// Host variables passed through; a trailing `*` matches a prefix (`LC_*`).
        public var keep: [String] = ["TERM", "LANG", "LC_*", "TZ", "COLORTERM", "NO_COLOR"]
        /// Variables set inside, applied after `keep`; `--env` applies after these.
        public var set: [String: String] = ["PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        public init() {}
    }

    /// `[gate]`: what a worker's changes must satisfy to come back (workspace issue).
    public struct Gate: Sendable, Equatable {
        public var maxLines: UInt64 = 5000
        public var maxBytes: UInt64 = 1 << 20
        public var forbidden: [String] = [".github/workflows/**", ".gitlab-ci.yml", ".ci/**", "CODEOWNERS"]
        public var tests: [String] = ["Tests/**", "tests/**", "test/**", "**/*_test.*", "**/test_*.*", "**/*Tests.swift", "**/*.test.*", "**/*.spec.*"]
        public init() {}
    }
}
