/// Where a persistent (named) sandbox keeps what survives between execs.
/// All host paths, created by the store before planning.
public struct Persistence: Sendable, Equatable {
    /// Sandbox name, exported as `SANDBOXD_SANDBOX`.
    public var name: String
    /// Root changes: `<rootChanges>/upper/<dir>` holds the changes to each
    /// overlaid system directory (/usr, /etc, /opt...); overlayfs's scratch
    /// space is under `<rootChanges>/work`.
    public var rootChanges: String
    /// Bound read-write as the sandbox's HOME.
    public var home: String
    /// Bound read-only at `/sandbox/plan.md` when present.
    public var plan: String?
    /// Bound read-write at `/sandbox/results`.
    public var results: String
    public init(name: String, rootChanges: String, home: String, plan: String?, results: String) {
        self.name = name
        self.rootChanges = rootChanges
        self.home = home
        self.plan = plan
        self.results = results
    }

    public static let planPath = "/sandbox/plan.md"
    public static let resultsPath = "/sandbox/results"
    /// Where a managed workdir appears inside: the same path on every host,
    /// so absolute paths the agent leaves behind (virtualenvs, build
    /// caches, notes) still hold after export and import elsewhere.
    public static let workdirPath = "/sandbox/work"

    /// The directory name of a system directory's layers: "/usr/local" -> "usr_local".
    public static func layerName(_ dest: String) -> String {
        String(dest.dropFirst().map { $0 == "/" ? "_" : $0 })
    }

    /// Overlay data ("UPPER\nWORK\nSUBDIR") of system directory `dest` with
    /// an overlay of its own: layers `upper/<layer>` and `work/<layer>`.
    public static func overlayData(_ p: Persistence, dest: String) -> String {
        let layer = layerName(dest)
        return "\(p.rootChanges)/upper/\(layer)\n\(p.rootChanges)/work/\(layer)\n"
    }

    /// Overlay data of top-level system directory `dest` (e.g. "/usr") as a
    /// directory of one overlay over the host's root filesystem: its upper
    /// layer is `upper` itself, so `upper/usr` holds /usr's changes exactly
    /// as with an overlay of its own.
    public static func sharedOverlayData(_ p: Persistence, dest: String) -> String {
        "\(p.rootChanges)/upper\n\(p.rootChanges)/work/.shared\n\(layerName(dest))"
    }
}

/// What the caller asked for, before any policy is applied: the CLI's flags
/// and the facts about the invoking process the planner needs.
public struct ExecRequest: Sendable, Equatable {
    public var argv: [String]
    /// Host directory mounted as the workdir and the command's cwd.
    public var workdir: String
    /// Where the workdir appears inside; nil: at its host path.
    public var workdirTarget: String?
    /// Overrides the profile's timeout when set (seconds).
    public var timeout: Double?
    /// `--env K=V`, applied last.
    public var env: [(String, String)]
    /// `--ro SRC[:DEST]` and `--rw SRC[:DEST]`.
    public var readOnly: [String]
    public var readWrite: [String]
    /// Give the command a pty (interactive use); the CLI sets it when stdin and stdout are terminals.
    public var tty: Bool
    /// A named sandbox's persistent state, or nil for a throwaway sandbox.
    public var persistence: Persistence?

    /// The invoking process: its environment (for the allow-list), home (for `~/` patterns), ids.
    public var hostEnvironment: [String: String]
    public var hostHome: String
    public var hostUID: UInt32
    public var hostGID: UInt32

    public init(
        argv: [String], workdir: String, timeout: Double? = nil, env: [(String, String)] = [],
        readOnly: [String] = [], readWrite: [String] = [], tty: Bool = false,
        hostEnvironment: [String: String] = [:], hostHome: String = "/root", hostUID: UInt32 = 0, hostGID: UInt32 = 0
    ) {
        self.argv = argv
        self.workdir = workdir
        self.workdirTarget = nil
        self.timeout = timeout
        self.env = env
        self.readOnly = readOnly
        self.readWrite = readWrite
        self.tty = tty
        self.persistence = nil
        self.hostEnvironment = hostEnvironment
        self.hostHome = hostHome
        self.hostUID = hostUID
        self.hostGID = hostGID
    }

    public static func == (a: ExecRequest, b: ExecRequest) -> Bool {
        a.argv == b.argv && a.workdir == b.workdir && a.workdirTarget == b.workdirTarget && a.timeout == b.timeout
            && a.env.map { "\($0.0)=\($0.1)" } == b.env.map { "\($0.0)=\($0.1)" }
            && a.readOnly == b.readOnly && a.readWrite == b.readWrite && a.tty == b.tty && a.persistence == b.persistence
            && a.hostEnvironment == b.hostEnvironment && a.hostHome == b.hostHome
            && a.hostUID == b.hostUID && a.hostGID == b.hostGID
    }
}
