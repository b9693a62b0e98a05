/// Everything the launcher will do, decided before any process exists: a
/// plain value, printable (`exec --dry-run`) and unit-testable. The launcher
/// executes it and decides nothing.
public struct LaunchPlan: Sendable, Equatable {
    public struct Mount: Sendable, Equatable {
        public enum Kind: String, Sendable { case bind, tmpfs, proc, dev, mask, readOnly = "readonly", symlink, overlay }
        public var kind: Kind
        /// Host path (bind), link text (symlink), nil otherwise.
        public var source: String?
        /// Absolute path inside the sandbox.
        public var target: String
        public var readOnly = false
        /// Skip silently when the source/target does not exist.
        public var optional = false
        /// Bind through an idmapped mount so files keep their host owner.
        public var idmap = false
        /// tmpfs mount data; for an overlay, the upper and work directories (host paths).
        public var data: String?
        /// The target's exact bytes when they are not UTF-8 (a blocked file's
        /// name can be any bytes); `target` then shows them with `\xNN` escapes.
        public var rawTarget: [UInt8]?

        public init(_ kind: Kind, source: String? = nil, target: String, readOnly: Bool = false,
                    optional: Bool = false, idmap: Bool = false, data: String? = nil) {
            self.kind = kind
            self.source = source
            self.target = target
            self.readOnly = readOnly
            self.optional = optional
            self.idmap = idmap
            self.data = data
        }

        /// A blocked-path mask at `path` (bytes inside the sandbox, see `RawPath`),
        /// skipped if the entry is gone by the time the root is built.
        public static func mask(at path: [UInt8]) -> Mount {
            if let text = String(validating: path, as: UTF8.self) { return Mount(.mask, target: text, optional: true) }
            var m = Mount(.mask, target: RawPath.display(path), optional: true)
            m.rawTarget = path
            return m
        }
    }

    public struct IDMapping: Sendable, Equatable {
        /// Lines of /proc/PID/uid_map and gid_map: "inside outside count".
        public var uidMap: String
        public var gidMap: String
        /// Ids the sandbox's pid 1 takes to assemble the root, and the command's ids.
        public var setupUID: UInt32
        public var setupGID: UInt32
        public var uid: UInt32
        public var gid: UInt32
        /// sandboxd holds no privilege over the host: setgroups is denied
        /// before gid_map is written, and binds are cloned inside the
        /// sandbox's own mount namespace (the host's is not ours to clone).
        public var unprivileged: Bool
        /// Maps of the user namespace root-owned read-write binds are idmapped
        /// through, so host uid 0's files appear owned by the command's uid;
        /// nil: the sandbox's own namespace (which shows every id as it is on disk).
        public var idmapUIDMap: String? = nil
        public var idmapGIDMap: String? = nil

        /// The host uid an id inside maps to, read off `uidMap` (nil if unmapped).
        public func hostUID(forInside id: UInt32) -> UInt32? { Self.lookup(uidMap, id) }
        public func hostGID(forInside id: UInt32) -> UInt32? { Self.lookup(gidMap, id) }

        static func lookup(_ map: String, _ id: UInt32) -> UInt32? {
            for line in map.split(separator: "\n") {
                let f = line.split(separator: " ").compactMap { UInt32($0) }
                if f.count == 3, id >= f[0], id - f[0] < f[2] { return f[1] + (id - f[0]) }
            }
            return nil
        }
    }

    public var profile: String
    public var namespaces: [String]
    public var ids: IDMapping
    public var hostname: String
    public var mounts: [Mount]
    public var cwd: String
    public var argv: [String]
    public var environment: [String]
    public var pathSearch: String
    public var capabilities: [String]
    public var capabilityMask: UInt64
    public var seccomp: [SeccompProgram]
    public var limits: Profile.Limits
    /// Effective wall-clock timeout, seconds; 0 = none.
    public var timeout: Double
    public var loopback: Bool
    public var tty: Bool
    /// How many blocked-path masks the planner found, and how many entries it walked to find them.
    public var maskedCount: Int
    public var walkedEntries: Int
    /// Directories the walk read, and those the index of an earlier walk answered (see WalkIndex).
    public var directoriesRead = 0
    public var directoriesReused = 0
    /// Checks on the workdir's `.git` after the run (see GitGuard).
    public var gitGuard: GitGuard? = nil
}
