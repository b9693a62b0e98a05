/// The command line of `sandboxd exec`, parsed by hand from one table.
///
/// `exec` is the hot path: swift-argument-parser (and the FoundationEssentials
/// it pulls in) cost every sandbox start ~2 ms of reflection and conformance
/// lookups, as much as bubblewrap's whole namespace setup. So the launcher
/// binary parses `exec` with this table and nothing else; every other
/// subcommand lives in `sandboxd-ext` with swift-argument-parser.
///
/// The grammar is argument-parser's: `--opt VALUE` or `--opt=VALUE`, options
/// until the first argument that is not one (or `--`), and everything from
/// there on is the command, captured as it is.
public struct ExecOptions: Equatable, Sendable {
    public var profile: String?
    public var workdir: String?
    public var timeout: Double?
    public var env: [String] = []
    public var readOnly: [String] = []
    public var readWrite: [String] = []
    public var dryRun = false
    public var jsonReport: String?
    public var tty: Bool?
    public var workflowID: String?
    public var repo: String?
    public var worker: String?
    public var base: String?
    public var claims: [String] = []
    /// The command as given: `CMD ARG...`, `-- CMD ARG...`, or `NAME -- CMD ARG...`.
    public var command: [String] = []
    /// `-h`/`--help` was given: print `ExecOptions.help` and run nothing.
    public var helpRequested = false

    public init() {}

    /// `--env K=V` values split at the first `=`.
    public var environment: [(String, String)] {
        env.map { e in
            let i = e.firstIndex(of: "=")!
            return (String(e[..<i]), String(e[e.index(after: i)...]))
        }
    }

    /// Parses the arguments after `exec`; a usage error names the flag at fault.
    /// A concrete slice, not `some Collection`: called across modules, the
    /// generic version ran unspecialized and looked up its associated types at
    /// run time on every launch.
    public static func parse(_ args: ArraySlice<String>) throws(UsageError) -> ExecOptions {
        var o = ExecOptions()
        var rest = args
        while let arg = rest.first, arg.hasPrefix("-"), arg != "--", arg != "-" {
            rest = rest.dropFirst()
            let (name, attached) = split(arg)
            guard let option = table.first(where: { $0.names.contains(name) }) else {
                throw UsageError("unknown option '\(name)'; see `sandboxd exec --help` (put the command after `--`)")
            }
            switch option.kind {
            case .flag(let set):
                if attached != nil { throw UsageError("\(name) takes no value") }
                set(&o)
            case .value(let placeholder, let set):
                let value: String
                if let attached { value = attached } else if let next = rest.first {
                    value = next
                    rest = rest.dropFirst()
                } else {
                    throw UsageError("\(name) needs a value (\(placeholder))")
                }
                try set(&o, value)
            }
        }
        o.command = Array(rest)
        if !o.helpRequested { try o.validate() }
        return o
    }

    /// The checks across options, after all of them are read.
    func validate() throws(UsageError) {
        if command.isEmpty || command == ["--"] {
            throw UsageError("no command given; usage: sandboxd exec [OPTIONS] -- CMD [ARG...]")
        }
        if (repo == nil) != (worker == nil) { throw UsageError("--repo and --worker go together") }
        if repo == nil && (base != nil || !claims.isEmpty) { throw UsageError("--base and --claim need --repo and --worker") }
        if repo != nil && workdir != nil {
            throw UsageError("--workdir and --repo exclude each other: the workdir is the worker's worktree")
        }
    }

    private static func split(_ arg: String) -> (String, String?) {
        guard arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") else { return (arg, nil) }
        return (String(arg[..<eq]), String(arg[arg.index(after: eq)...]))
    }

    // MARK: - The table

    struct Option: Sendable {
        enum Kind: Sendable {
            case flag(@Sendable (inout ExecOptions) -> Void)
            case value(String, @Sendable (inout ExecOptions, String) throws(UsageError) -> Void)
        }
        var names: [String]
        var kind: Kind
        var help: String
    }

    static let table: [Option] = [
        Option(names: ["-p", "--profile"], kind: .value("NAME|PATH") { o, v in o.profile = v },
               help: "Profile name or path to a .toml file (default: worker)."),
        Option(names: ["--workdir"], kind: .value("DIR") { o, v in o.workdir = v },
               help: "Directory mounted at its own path as the workdir, and the command's working directory (default: the current directory)."),
        Option(names: ["--timeout"], kind: .value("SECONDS") { o, v throws(UsageError) in
            guard let t = Double(v), t > 0, t.isFinite else {
                throw UsageError("--timeout \(v): must be a positive number of seconds")
            }
            o.timeout = t
        }, help: "Kill the sandbox after this many seconds (exit 124). Overrides the profile's timeout."),
        Option(names: ["--env"], kind: .value("K=V") { o, v throws(UsageError) in
            guard let eq = v.firstIndex(of: "="), eq != v.startIndex else { throw UsageError("--env \(v): expected K=V") }
            o.env.append(v)
        }, help: "Set a variable inside (repeatable)."),
        Option(names: ["--ro"], kind: .value("PATH[:DEST]") { o, v throws(UsageError) in
            try checkBind("--ro", v)
            o.readOnly.append(v)
        }, help: "Bind a host path read-only (repeatable)."),
        Option(names: ["--rw"], kind: .value("PATH[:DEST]") { o, v throws(UsageError) in
            try checkBind("--rw", v)
            o.readWrite.append(v)
        }, help: "Bind a host path read-write (repeatable)."),
        Option(names: ["--dry-run"], kind: .flag { $0.dryRun = true },
               help: "Print the launch plan instead of running anything."),
        Option(names: ["--json-report"], kind: .value("FILE") { o, v in o.jsonReport = v },
               help: "Write a JSON report (or the plan, with --dry-run) to FILE; '-' for stdout."),
        Option(names: ["--tty"], kind: .flag { $0.tty = true },
               help: "Give the command a terminal (default: when stdin and stdout are terminals)."),
        Option(names: ["--no-tty"], kind: .flag { $0.tty = false },
               help: "Never give the command a terminal."),
        Option(names: ["--workflow-id"], kind: .value("ID") { o, v in o.workflowID = v },
               help: "Correlation id in a named sandbox's audit log (default: $SANDBOXD_WORKFLOW_ID)."),
        Option(names: ["--repo"], kind: .value("REPO") { o, v in o.repo = v },
               help: "Run in the worktree of worker --worker of this repository; the gate checks its changes afterwards."),
        Option(names: ["--worker"], kind: .value("NAME") { o, v in o.worker = v },
               help: "The worker (with --repo): its worktree is on branch sandboxd/NAME."),
        Option(names: ["--base"], kind: .value("COMMIT") { o, v in o.base = v },
               help: "With --repo: the commit a new worktree starts from (default: the repository's HEAD)."),
        Option(names: ["--claim"], kind: .value("PATTERN") { o, v in o.claims.append(v) },
               help: "With --repo: a path or glob the worker claims before it starts (repeatable); a conflict exits 75."),
        Option(names: ["-h", "--help"], kind: .flag { $0.helpRequested = true },
               help: "Show this help."),
    ]

    private static func checkBind(_ flag: String, _ spec: String) throws(UsageError) {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count > 2 || parts.contains(where: { !$0.hasPrefix("/") }) {
            throw UsageError("\(flag) \(spec): expected an absolute PATH or PATH:DEST")
        }
    }

    /// `sandboxd exec --help`, rendered from the table.
    public static var help: String {
        var s = """
            OVERVIEW: Run a command in a sandbox.

            Exit status: the command's own; 128+N if it died of signal N; 124 if the timeout
            killed it; 125 if sandboxd could not set up the sandbox (bad flags or profile
            included, or the named sandbox is in use); 126 if the command cannot be executed;
            127 if it was not found. `sandboxd exec NAME -- CMD`, NAME being a sandbox made by
            `sandboxd create`, runs in that sandbox with its profile, workdir, root changes,
            HOME, plan and results.

            USAGE: sandboxd exec [OPTIONS] [--] CMD [ARG...]
                   sandboxd exec [OPTIONS] NAME -- CMD [ARG...]

            OPTIONS:

            """
        let rows = table.map { option -> (String, String) in
            var left = option.names.joined(separator: ", ")
            if case .value(let placeholder, _) = option.kind { left += " <\(placeholder)>" }
            return (left, option.help)
        }
        let width = rows.map(\.0.count).max() ?? 0
        for (left, text) in rows {
            s += "  " + left + String(repeating: " ", count: width - left.count + 2) + text + "\n"
        }
        return s
    }
}

/// A command-line mistake: printed as `sandboxd: MESSAGE`, exit 125.
public struct UsageError: Error, Equatable, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}
