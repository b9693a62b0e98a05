/// One line of `sandboxd profiles`.
public struct ProfileSummary: Sendable, Equatable {
    public var name: String
    public var description: String
    /// Where the winning definition lives: a path, or "embedded:NAME".
    public var source: String
    /// Set when the profile does not load; it is still listed so the problem is visible.
    public var error: ProfileError?

    public init(name: String, description: String, source: String, error: ProfileError? = nil) {
        self.name = name
        self.description = description
        self.source = source
        self.error = error
    }
}

/// Finds profiles by name or path, follows `extends`, and validates them into `Profile`s.
///
/// A NAME is looked up, first match wins, in:
/// 1. `./profiles/NAME.toml` (relative to `cwd`): a project's own profiles;
/// 2. each directory of `$SANDBOXD_PROFILES` (colon-separated);
/// 3. `/etc/sandboxd/profiles/NAME.toml` (`systemDirectory`);
/// 4. the profiles built into sandboxd (`embedded:NAME` names one of them explicitly).
///
/// Anything containing "/" or ending in ".toml" is a path instead: relative to
/// `cwd`, or, inside `extends`, to the directory of the extending file.
public struct ProfileLoader: Sendable {
    public var cwd: String
    public var environment: [String: String]
    public var homeDirectory: String
    public var systemDirectory: String

    /// A chain longer than this is surely a mistake (cycles are caught separately).
    static let maximumExtendsDepth = 32

    public init(
        cwd: String, environment: [String: String], homeDirectory: String,
        systemDirectory: String = "/etc/sandboxd/profiles"
    ) {
        self.cwd = cwd
        self.environment = environment
        self.homeDirectory = homeDirectory
        self.systemDirectory = systemDirectory
    }

    /// The directories searched for a NAME, in order (absolute paths).
    public var searchDirectories: [String] {
        let fromEnvironment = (environment["SANDBOXD_PROFILES"] ?? "")
            .split(separator: ":").map { absolute(String($0)) }
        return [absolute("profiles")] + fromEnvironment + [systemDirectory]
    }

    /// Loads, resolves (`extends`) and validates the profile `nameOrPath`.
    public func load(_ nameOrPath: String) throws(ProfileError) -> Profile {
        let file = try locate(nameOrPath, requestedBy: nil)
        return try resolve(file, chain: [])
    }

    /// Every profile reachable by name, first definition of each name winning, sorted by name.
    public func available() -> [ProfileSummary] {
        var summaries: [ProfileSummary] = []
        for candidate in reachableProfiles() {
            switch Result(catching: { () throws(ProfileError) in try resolve(candidate, chain: []) }) {
            case .success(let profile):
                summaries.append(ProfileSummary(name: profile.name, description: profile.description, source: profile.source))
            case .failure(let error):
                summaries.append(ProfileSummary(name: candidate.name, description: "", source: candidate.source, error: error))
            }
        }
        return summaries.sorted { $0.name < $1.name }
    }

    /// The first definition of every name, unread and unresolved: listing names must not
    /// load profiles, or an unknown `extends` would recurse through its own error message.
    private func reachableProfiles() -> [ProfileReference] {
        var candidates: [ProfileReference] = []
        for directory in searchDirectories {
            for fileName in ProfileFiles.tomlFiles(in: directory) {
                candidates.append(file(at: directory + "/" + fileName))
            }
        }
        candidates += EmbeddedProfiles.texts.keys.sorted().map(embedded)
        var seen: Set<String> = []
        return candidates.filter { seen.insert($0.name).inserted }
    }

    // MARK: Lookup

    /// A profile found by lookup: where it is, not yet read.
    struct ProfileReference: Sendable {
        var name: String
        /// For messages and `Profile.source`: a path relative to cwd when under it, or "embedded:NAME".
        var source: String
        /// Absolute path or "embedded:NAME": what cycle detection compares.
        var identity: String
        /// Directory relative `extends` paths start from; nil for embedded profiles (cwd is used).
        var directory: String?
        /// The text of an embedded profile; files are read when resolved.
        var embeddedText: String?

        /// The text, or why it could not be read.
        func read() -> Result<String, ValueProblem> {
            embeddedText.map { .success($0) } ?? ProfileFiles.read(identity)
        }
    }

    /// Where a reference was written, for errors: the extending file and line, or the caller.
    private struct Site: Sendable {
        var file: ProfileReference
        var line: Int
    }

    private func locate(_ reference: String, requestedBy site: Site?) throws(ProfileError) -> ProfileReference {
        func fail(_ message: String) -> ProfileError {
            guard let site else { return ProfileError(file: reference, line: 0, key: "", message: message) }
            return ProfileError(file: site.file.source, line: site.line, key: "extends", message: message)
        }
        if reference.isEmpty {
            throw fail("empty profile name; give a name like \"worker\" or a path to a .toml file")
        }
        if reference.hasPrefix("embedded:") {
            let name = String(reference.dropFirst("embedded:".count))
            guard EmbeddedProfiles.texts[name] != nil else {
                throw fail("no built-in profile named '\(name)'; built in: \(EmbeddedProfiles.texts.keys.sorted().joined(separator: ", "))")
            }
            return embedded(name)
        }
        if reference.contains("/") || reference.hasSuffix(".toml") {
            var path = reference
            if path == "~" || path.hasPrefix("~/") { path = homeDirectory + path.dropFirst() }
            let base = site?.file.directory ?? cwd
            let found = file(at: ProfileFiles.absolute(path, base: base))
            guard ProfileFiles.exists(found.identity) else {
                throw fail("no profile file at \(found.source)")
            }
            return found
        }
        for directory in searchDirectories {
            let path = ProfileFiles.normalize(directory + "/" + reference + ".toml")
            if ProfileFiles.exists(path) { return file(at: path) }
        }
        if EmbeddedProfiles.texts[reference] != nil { return embedded(reference) }
        let names = reachableProfiles().map(\.name).sorted()
        throw fail("no profile named '\(reference)'; available: \(names.joined(separator: ", ")) (searched ./profiles, $SANDBOXD_PROFILES, \(systemDirectory) and the built-in set)")
    }

    private func file(at path: String) -> ProfileReference {
        ProfileReference(
            name: ProfileFiles.stem(of: path), source: display(path), identity: path,
            directory: ProfileFiles.directory(of: path), embeddedText: nil)
    }

    private func embedded(_ name: String) -> ProfileReference {
        ProfileReference(
            name: name, source: "embedded:\(name)", identity: "embedded:\(name)", directory: nil,
            embeddedText: EmbeddedProfiles.texts[name] ?? "")
    }

    // MARK: Resolution

    /// Parses `file`, loads what it extends, and applies its keys over the parent's.
    /// `chain` holds the files that (transitively) extend this one, for cycle detection.
    private func resolve(_ file: ProfileReference, chain: [ProfileReference]) throws(ProfileError) -> Profile {
        let text: String
        switch file.read() {
        case .success(let t): text = t
        case .failure(let problem): throw ProfileError(file: file.source, line: 0, key: "", message: problem.message)
        }
        let root = try TOMLParser.parse(text, file: file.source)
        var profile = Profile(name: file.name)
        if let entry = root["extends"] {
            let reference = try Field(file: file.source, key: "extends", entry: entry).string()
            let parent = try locate(reference, requestedBy: Site(file: file, line: entry.line))
            let lineage = chain + [file]
            if let start = lineage.firstIndex(where: { $0.identity == parent.identity }) {
                let cycle = (lineage[start...].map(\.source) + [parent.source]).joined(separator: " -> ")
                var message = "extends cycle: \(cycle)"
                if parent.identity == file.identity && !reference.contains("/") && EmbeddedProfiles.texts[reference] != nil {
                    message += "; to build on the built-in profile of the same name, write extends = \"embedded:\(reference)\""
                }
                throw ProfileError(file: file.source, line: entry.line, key: "extends", message: message)
            }
            guard lineage.count < Self.maximumExtendsDepth else {
                throw ProfileError(file: file.source, line: entry.line, key: "extends", message: "extends chain is deeper than \(Self.maximumExtendsDepth) profiles; flatten it")
            }
            profile = try resolve(parent, chain: lineage)
        }
        try ProfileDecoder(file: file.source).apply(root, to: &profile)
        profile.name = file.name
        profile.source = file.source
        return profile
    }

    // MARK: Paths

    private func absolute(_ path: String) -> String {
        let expanded = path == "~" || path.hasPrefix("~/") ? homeDirectory + path.dropFirst() : path
        return ProfileFiles.absolute(expanded, base: cwd)
    }

    /// Paths under cwd are shown relative to it ("profiles/ci.toml"): shorter, and what the user typed.
    private func display(_ path: String) -> String {
        let root = ProfileFiles.normalize(cwd)
        guard root != "/", path.hasPrefix(root + "/") else { return path }
        return String(path.dropFirst(root.count + 1))
    }
}
