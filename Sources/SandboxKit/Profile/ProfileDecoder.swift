/// Applies one profile file's keys onto a `Profile`: the parent's (after `extends`) or the defaults.
///
/// Every key is checked for type and range here, so the planner can trust a
/// `Profile` blindly. Errors carry the file, the line of the key (or of the
/// array element at fault) and the dotted key, and say what would be accepted.
struct ProfileDecoder: Sendable {
    /// How a key changes an inherited list: `keep = [...]` replaces, `keep_add` appends, `keep_remove` removes.
    enum ListOperation: Int, Comparable, Sendable {
        case replace = 0, add, remove
        static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    /// The accepted keys of each section; `lists` also accept `_add` and `_remove`.
    struct Section: Sendable {
        var name: String
        var keys: [String]
        var lists: Set<String>
    }

    static let topLevelKeys = ["description", "extends"]

    static let sections: [Section] = [
        Section(name: "identity", keys: ["uid", "gid", "hostname"], lists: []),
        Section(
            name: "filesystem",
            keys: ["read_only", "read_write", "hide", "workdir", "tmp_size", "home_size", "home", "home_writable", "blocked", "protected"],
            lists: ["read_only", "read_write", "hide", "blocked", "protected"]),
        Section(name: "network", keys: ["mode"], lists: []),
        Section(name: "capabilities", keys: ["keep"], lists: ["keep"]),
        Section(name: "seccomp", keys: ["deny", "allow"], lists: ["deny", "allow"]),
        Section(name: "limits", keys: ["memory", "pids", "cpus", "open_files", "file_size", "timeout"], lists: []),
        Section(name: "environment", keys: ["keep", "set"], lists: ["keep"]),
        Section(name: "gate", keys: ["max_lines", "max_bytes", "forbidden", "tests"], lists: ["forbidden", "tests"]),
    ]

    let file: String

    /// Applies every key of `root` except `extends`, which the loader has already followed.
    func apply(_ root: TOMLTable, to profile: inout Profile) throws(ProfileError) {
        for entry in root.entries {
            let field = Field(file: file, key: entry.key, entry: entry)
            switch entry.key {
            case "description":
                profile.description = try field.string()
            case "extends":
                _ = try field.string()
            default:
                guard let section = Self.sections.first(where: { $0.name == entry.key }) else {
                    throw unknownTopLevel(entry)
                }
                guard case .table(let table) = entry.value.kind else {
                    throw field.fail("expected a table [\(entry.key)], found \(entry.value.typeDescription)")
                }
                try apply(section, table, to: &profile)
            }
        }
    }

    // MARK: Sections

    private func apply(_ section: Section, _ table: TOMLTable, to profile: inout Profile) throws(ProfileError) {
        // Resolve every key first so `keep_add` before `keep` in the file still applies after it.
        var fields: [(name: String, operation: ListOperation, field: Field)] = []
        for entry in table.entries {
            let (name, operation) = Self.split(entry.key, in: section)
            guard section.keys.contains(name), operation == .replace || section.lists.contains(name) else {
                throw unknownKey(entry, in: section)
            }
            fields.append((name, operation, Field(file: file, key: "\(section.name).\(entry.key)", entry: entry)))
        }
        for (name, operation, field) in fields.sorted(by: { $0.operation < $1.operation }) {
            switch section.name {
            case "identity": try applyIdentity(name, field, to: &profile.identity)
            case "filesystem": try applyFilesystem(name, operation, field, to: &profile.filesystem)
            case "network": try applyNetwork(name, field, to: &profile.network)
            case "capabilities": try field.list(operation, &profile.capabilities.keep, Validate.capability)
            case "seccomp": try applySeccomp(name, operation, field, to: &profile.seccomp)
            case "limits": try applyLimits(name, field, to: &profile.limits)
            case "environment": try applyEnvironment(name, operation, field, to: &profile.environment)
            case "gate": try applyGate(name, operation, field, to: &profile.gate)
            default: preconditionFailure("section \(section.name) has no decoder")
            }
        }
    }

    private func applyIdentity(_ name: String, _ field: Field, to identity: inout Profile.Identity) throws(ProfileError) {
        switch name {
        case "uid": identity.uid = UInt32(try field.integer(in: 0...65535))
        case "gid": identity.gid = UInt32(try field.integer(in: 0...65535))
        default: identity.hostname = try field.string(Validate.hostname)
        }
    }

    private func applyFilesystem(
        _ name: String, _ operation: ListOperation, _ field: Field, to fs: inout Profile.Filesystem
    ) throws(ProfileError) {
        switch name {
        case "read_only": try field.list(operation, &fs.readOnly, Validate.bind)
        case "read_write": try field.list(operation, &fs.readWrite, Validate.bind)
        case "hide": try field.list(operation, &fs.hide, Validate.absolutePath)
        case "blocked": try field.list(operation, &fs.blocked, Validate.blockedPattern)
        case "protected": try field.list(operation, &fs.protected, Validate.relativePattern)
        case "workdir":
            let text = try field.string()
            guard let mode = Profile.Filesystem.WorkdirMode(rawValue: text) else {
                throw field.fail("expected \"rw\" (writable) or \"ro\" (read-only), found \"\(text)\"")
            }
            fs.workdir = mode
        case "tmp_size": fs.tmpSize = try field.size(allowZero: false)
        case "home_size": fs.homeSize = try field.size(allowZero: false)
        case "home": fs.home = try field.string(Validate.home)
        default: fs.homeWritable = try field.bool()
        }
    }

    private func applyNetwork(_ name: String, _ field: Field, to network: inout Profile.Network) throws(ProfileError) {
        let text = try field.string()
        guard let mode = Profile.Network.Mode(rawValue: text) else {
            throw field.fail("expected \"loopback\" (only lo is up) or \"none\" (no interface at all), found \"\(text)\"")
        }
        network.mode = mode
    }

    private func applySeccomp(
        _ name: String, _ operation: ListOperation, _ field: Field, to seccomp: inout Profile.Seccomp
    ) throws(ProfileError) {
        if name == "deny" {
            try field.list(operation, &seccomp.deny, Validate.syscall)
        } else {
            try field.list(operation, &seccomp.allow, Validate.syscall)
        }
    }

    private func applyLimits(_ name: String, _ field: Field, to limits: inout Profile.Limits) throws(ProfileError) {
        switch name {
        case "memory": limits.memory = try field.size(allowZero: true)
        // Linux's PID_MAX_LIMIT: no cgroup can hold more tasks than this.
        case "pids": limits.pids = UInt64(try field.integer(in: 0...4_194_304))
        case "cpus": limits.cpus = try field.number(atLeast: 0)
        // 1048576 is the kernel's default fs.nr_open; RLIMIT_NOFILE cannot exceed it.
        case "open_files": limits.openFiles = UInt64(try field.integer(in: 1...1_048_576))
        case "file_size": limits.fileSize = try field.size(allowZero: true)
        default: limits.timeout = try field.duration()
        }
    }

    private func applyEnvironment(
        _ name: String, _ operation: ListOperation, _ field: Field, to environment: inout Profile.Environment
    ) throws(ProfileError) {
        if name == "keep" {
            try field.list(operation, &environment.keep, Validate.environmentPattern)
            return
        }
        // `set` is a table: merged key by key with the inherited one.
        guard case .table(let table) = field.value.kind else {
            throw field.fail("expected a table of NAME = \"value\" (e.g. set = { EDITOR = \"vi\" }), found \(field.value.typeDescription)")
        }
        for entry in table.entries {
            let variable = Field(file: file, key: "\(field.key).\(entry.key)", entry: entry)
            if let problem = Validate.environmentName(entry.key) {
                throw variable.fail(problem)
            }
            environment.set[entry.key] = try variable.string(Validate.environmentValue)
        }
    }

    private func applyGate(
        _ name: String, _ operation: ListOperation, _ field: Field, to gate: inout Profile.Gate
    ) throws(ProfileError) {
        switch name {
        case "max_lines": gate.maxLines = UInt64(try field.integer(in: 0...Int64.max))
        case "max_bytes": gate.maxBytes = try field.size(allowZero: true)
        case "forbidden": try field.list(operation, &gate.forbidden, Validate.relativePattern)
        default: try field.list(operation, &gate.tests, Validate.relativePattern)
        }
    }

    // MARK: Unknown keys

    /// "keep_add" → ("keep", .add) when `keep` is a list of `section`; anything else is a plain key.
    static func split(_ key: String, in section: Section) -> (String, ListOperation) {
        for (suffix, operation) in [("_add", ListOperation.add), ("_remove", .remove)] where key.hasSuffix(suffix) {
            let base = String(key.dropLast(suffix.count))
            if section.lists.contains(base) { return (base, operation) }
        }
        return (key, .replace)
    }

    private func unknownKey(_ entry: TOMLTable.Entry, in section: Section) -> ProfileError {
        let (_, operation) = Self.split(entry.key, in: section)
        let key = "\(section.name).\(entry.key)"
        if operation == .replace, let suffix = ["_add", "_remove"].first(where: { entry.key.hasSuffix($0) }),
           section.keys.contains(String(entry.key.dropLast(suffix.count))) {
            let base = entry.key.dropLast(suffix.count)
            let lists = section.lists.sorted().joined(separator: ", ")
            let message = section.lists.isEmpty
                ? "'\(entry.key)' is not allowed: [\(section.name)] has no list keys; set '\(base)' instead"
                : "'\(entry.key)' is not allowed: only list keys take \(suffix) (in [\(section.name)]: \(lists)); set '\(base)' instead"
            return ProfileError(file: file, line: entry.line, key: key, message: message)
        }
        var candidates = section.keys
        for list in section.lists.sorted() { candidates += [list + "_add", list + "_remove"] }
        var message = "unknown key '\(entry.key)' in [\(section.name)]"
        if let suggestion = Suggest.closest(to: entry.key, in: candidates) {
            message += "; did you mean '\(suggestion)'?"
        } else {
            message += "; known keys: \(section.keys.joined(separator: ", "))"
        }
        return ProfileError(file: file, line: entry.line, key: key, message: message)
    }

    private func unknownTopLevel(_ entry: TOMLTable.Entry) -> ProfileError {
        let names = Self.sections.map(\.name)
        var message: String
        if case .table = entry.value.kind {
            message = "unknown table [\(entry.key)]"
            if let suggestion = Suggest.closest(to: entry.key, in: names) {
                message += "; did you mean [\(suggestion)]?"
            } else {
                message += "; known tables: \(names.map { "[\($0)]" }.joined(separator: ", "))"
            }
        } else if let home = Self.sections.first(where: { $0.keys.contains(entry.key) }) {
            // A common slip: a key written above its section header.
            message = "unknown top-level key '\(entry.key)'; it belongs in [\(home.name)] (or write \(home.name).\(entry.key) = ...)"
        } else {
            message = "unknown top-level key '\(entry.key)'"
            if let suggestion = Suggest.closest(to: entry.key, in: Self.topLevelKeys + names) {
                message += "; did you mean '\(suggestion)'?"
            } else {
                message += "; the top level holds description, extends and the tables \(names.map { "[\($0)]" }.joined(separator: ", "))"
            }
        }
        return ProfileError(file: file, line: entry.line, key: entry.key, message: message)
    }
}

// MARK: - Typed access to one key

/// One key being decoded: typed getters that throw located, explanatory errors.
struct Field: Sendable {
    let file: String
    /// Dotted key for messages, e.g. "limits.memory".
    let key: String
    let line: Int
    let value: TOMLValue

    init(file: String, key: String, entry: TOMLTable.Entry) {
        self.file = file
        self.key = key
        self.line = entry.line
        self.value = entry.value
    }

    func fail(_ message: String, line: Int? = nil) -> ProfileError {
        ProfileError(file: file, line: line ?? self.line, key: key, message: message)
    }

    func string(_ check: (String) -> String? = { _ in nil }) throws(ProfileError) -> String {
        guard case .string(let text) = value.kind else {
            throw fail("expected a string in quotes, found \(value.typeDescription)")
        }
        if let problem = check(text) { throw fail(problem) }
        return text
    }

    func bool() throws(ProfileError) -> Bool {
        guard case .boolean(let flag) = value.kind else {
            throw fail("expected true or false, found \(value.typeDescription)")
        }
        return flag
    }

    func integer(in range: ClosedRange<Int64>) throws(ProfileError) -> Int64 {
        guard case .integer(let number) = value.kind else {
            throw fail("expected an integer, found \(value.typeDescription)")
        }
        guard range.contains(number) else {
            let bounds = range.upperBound == Int64.max ? "at least \(range.lowerBound)" : "between \(range.lowerBound) and \(range.upperBound)"
            throw fail("\(number) is out of range; expected an integer \(bounds)")
        }
        return number
    }

    /// An integer or a float (`cpus = 2` and `cpus = 1.5` both read naturally).
    func number(atLeast minimum: Double) throws(ProfileError) -> Double {
        let number: Double
        switch value.kind {
        case .integer(let n): number = Double(n)
        case .float(let n): number = n
        default: throw fail("expected a number, found \(value.typeDescription)")
        }
        guard number >= minimum else { throw fail("\(number) is out of range; expected a number of at least \(Int(minimum))") }
        return number
    }

    /// Bytes: an integer, or a string with a unit ("512MiB").
    func size(allowZero: Bool) throws(ProfileError) -> UInt64 {
        let bytes: UInt64
        switch value.kind {
        case .integer(let n):
            guard n >= 0 else { throw fail("a size cannot be negative") }
            bytes = UInt64(n)
        case .string(let text):
            switch ByteSize.parse(text) {
            case .success(let n): bytes = n
            case .failure(let error): throw fail(error.message)
            }
        default:
            throw fail("expected a size: a number of bytes or a string like \"512MiB\", found \(value.typeDescription)")
        }
        if bytes == 0 && !allowZero { throw fail("must be larger than 0; write a size like \"64MiB\"") }
        return bytes
    }

    /// Seconds: a number, or a string with a unit ("5m").
    func duration() throws(ProfileError) -> Double {
        let seconds: Double
        switch value.kind {
        case .integer(let n): seconds = Double(n)
        case .float(let n): seconds = n
        case .string(let text):
            switch DurationText.parse(text) {
            case .success(let n): seconds = n
            case .failure(let error): throw fail(error.message)
            }
        default:
            throw fail("expected seconds as a number or a string like \"30s\", \"5m\", \"1h\", found \(value.typeDescription)")
        }
        guard seconds >= 0 else { throw fail("a duration cannot be negative; use 0 for no timeout") }
        return seconds
    }

    /// Applies a list key to `list`: replaces, appends to, or removes from it.
    /// `check` returns the normalized entry, or a message explaining the problem.
    func list(
        _ operation: ProfileDecoder.ListOperation, _ list: inout [String],
        _ check: (String) -> Result<String, ValueProblem>
    ) throws(ProfileError) {
        guard case .array(let items) = value.kind else {
            throw fail("expected an array of strings like [\"a\", \"b\"], found \(value.typeDescription)")
        }
        var entries: [String] = []
        for item in items {
            guard case .string(let text) = item.kind else {
                throw fail("expected every entry to be a string in quotes, found \(item.typeDescription)", line: item.line)
            }
            switch check(text) {
            case .success(let entry): if !entries.contains(entry) { entries.append(entry) }
            case .failure(let error): throw fail("\"\(text)\": \(error.message)", line: item.line)
            }
        }
        switch operation {
        case .replace: list = entries
        case .add: list += entries.filter { !list.contains($0) }
        case .remove: list.removeAll { entries.contains($0) }
        }
    }
}

// MARK: - Entry validators

/// Checks for single values; each returns the normalized value or says what is wrong.
enum Validate {
    static func hostname(_ name: String) -> String? {
        let allowed = name.utf8.allSatisfy { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
        guard (1...64).contains(name.utf8.count), allowed,
              name.utf8.first!.isASCIIAlphanumeric, name.utf8.last!.isASCIIAlphanumeric else {
            return "\"\(name)\" is not a valid hostname; use 1 to 64 letters, digits, '-' and '.', starting and ending with a letter or digit"
        }
        return nil
    }

    static func home(_ path: String) -> String? {
        if case .failure(let error) = absolutePath(path) { return error.message }
        return path == "/" ? "HOME cannot be / (it would cover the whole root); use a path like /home/sandbox" : nil
    }

    static func absolutePath(_ path: String) -> Result<String, ValueProblem> {
        guard path.hasPrefix("/") else { return .failure(ValueProblem("must be an absolute path starting with /")) }
        if let problem = pathProblem(path) { return .failure(ValueProblem(problem)) }
        return .success(path)
    }

    /// "SRC" or "SRC:DEST", both absolute.
    static func bind(_ spec: String) -> Result<String, ValueProblem> {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2 else {
            return .failure(ValueProblem("expected \"SRC\" or \"SRC:DEST\"; paths containing ':' are not supported"))
        }
        for part in parts {
            guard part.hasPrefix("/") else {
                return .failure(ValueProblem("expected \"SRC\" or \"SRC:DEST\" with absolute paths (starting with /)"))
            }
            if let problem = pathProblem(String(part)) { return .failure(ValueProblem(problem)) }
        }
        return .success(spec)
    }

    /// "~/x" (host home), "**/x" (any depth of the workdir), "x" (workdir top) or "/abs".
    static func blockedPattern(_ pattern: String) -> Result<String, ValueProblem> {
        if pattern.hasPrefix("~") && !pattern.hasPrefix("~/") {
            return .failure(ValueProblem("only ~/ (the invoking user's home) is supported, not ~user"))
        }
        guard pattern != "~/" else { return .failure(ValueProblem("blocking the whole home directory is not a pattern; name what to block, like \"~/.ssh\"")) }
        if let problem = pathProblem(pattern) { return .failure(ValueProblem(problem)) }
        return .success(pattern)
    }

    /// A pattern relative to the workdir ("**/*.pem", ".git/hooks").
    static func relativePattern(_ pattern: String) -> Result<String, ValueProblem> {
        guard !pattern.hasPrefix("/"), !pattern.hasPrefix("~") else {
            return .failure(ValueProblem("must be relative to the workdir (no leading / or ~)"))
        }
        if let problem = pathProblem(pattern) { return .failure(ValueProblem(problem)) }
        return .success(pattern)
    }

    static func capability(_ name: String) -> Result<String, ValueProblem> {
        let normalized = CapabilityNames.normalize(name)
        guard CapabilityNames.known.contains(normalized) else {
            var message = "unknown capability"
            if let suggestion = Suggest.closest(to: normalized, in: CapabilityNames.known.sorted()) {
                message += "; did you mean \"\(suggestion)\"?"
            } else {
                message += "; see capabilities(7) for the names (with or without CAP_)"
            }
            return .failure(ValueProblem(message))
        }
        if Profile.Capabilities.forbidden.contains(normalized) {
            return .failure(ValueProblem("\(normalized) cannot be kept: \(CapabilityNames.whyForbidden(normalized))"))
        }
        return .success(normalized)
    }

    static func syscall(_ name: String) -> Result<String, ValueProblem> {
        let valid = !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy {
            ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: "_")
        }
        return valid ? .success(name) : .failure(ValueProblem("not a syscall name; use the lowercase name from syscalls(2), like \"ptrace\""))
    }

    /// "TERM", or a prefix pattern "LC_*".
    static func environmentPattern(_ pattern: String) -> Result<String, ValueProblem> {
        if pattern == "*" {
            return .failure(ValueProblem("\"*\" would pass every host variable, secrets included; list the names you need"))
        }
        let name = pattern.hasSuffix("*") ? String(pattern.dropLast()) : pattern
        if let problem = environmentName(name) { return .failure(ValueProblem(problem)) }
        return .success(pattern)
    }

    static func environmentName(_ name: String) -> String? {
        guard let first = name.utf8.first, first == UInt8(ascii: "_") || first.isASCIILetter,
              name.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "_") }) else {
            return "\"\(name)\" is not a valid variable name; use letters, digits and '_', not starting with a digit"
        }
        return nil
    }

    static func environmentValue(_ value: String) -> String? {
        value.utf8.contains(0) ? "a variable's value cannot contain a NUL character" : nil
    }

    /// Problems shared by every path and pattern.
    private static func pathProblem(_ path: String) -> String? {
        if path.isEmpty { return "an empty path is not allowed" }
        if path.utf8.contains(0) { return "a path cannot contain a NUL character" }
        if path.utf8.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual("..".utf8) }) {
            return "'..' is not allowed in paths here; write the path it leads to"
        }
        return nil
    }
}

extension UInt8 {
    fileprivate var isASCIILetter: Bool {
        (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "z")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "Z"))
    }
    fileprivate var isASCIIAlphanumeric: Bool {
        isASCIILetter || (self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9"))
    }
}

/// "did you mean ...?" by edit distance.
enum Suggest {
    /// The candidate closest to `word`, if it is close enough to be a plausible typo.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, distance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        let tolerance = max(2, word.count / 3)
        return best.1 <= tolerance ? best.0 : nil
    }

    /// Levenshtein distance.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            previous = current
        }
        return previous[b.count]
    }
}
