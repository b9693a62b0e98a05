import Glibc
import Testing

@testable import SandboxKit

/// Decodes one profile's text onto the defaults, as the loader does for a profile without `extends`.
private func decode(_ text: String, file: String = "test.toml") throws(ProfileError) -> Profile {
    let root = try TOMLParser.parse(text, file: file)
    var profile = Profile(name: "test")
    try ProfileDecoder(file: file).apply(root, to: &profile)
    return profile
}

/// The repository root, found from this file's path (Tests/SandboxKitTests/ProfileTests.swift).
private let repositoryRoot: String = {
    var path = "\(#filePath)"
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path
}()

private let builtInNames = ["ci", "explorer", "reviewer", "untrusted", "worker"]

// MARK: - Built-in profiles

@Suite struct BuiltInProfileTests {
    /// A loader that can only reach the embedded set: empty cwd, no $SANDBOXD_PROFILES, empty system dir.
    private func embeddedOnly<R>(_ body: (ProfileLoader) throws -> R) throws -> R {
        try withTemporaryDirectory { dir in
            try body(ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir + "/etc"))
        }
    }

    @Test(arguments: builtInNames)
    func loadsFromTheEmbeddedSet(name: String) throws {
        let profile = try embeddedOnly { try $0.load(name) }
        #expect(profile.name == name)
        #expect(profile.source == "embedded:\(name)")
        #expect(!profile.description.isEmpty)
    }

    @Test(arguments: builtInNames)
    func embeddedTextEqualsTheFileByteForByte(name: String) throws {
        let file = try readFile("\(repositoryRoot)/profiles/\(name).toml")
        let embedded = try #require(EmbeddedProfiles.texts[name], "run scripts/embed-profiles")
        #expect(Array(embedded.utf8) == Array(file.utf8), "profiles/\(name).toml changed: run scripts/embed-profiles")
    }

    @Test func everyProfileFileIsEmbedded() throws {
        let files = ProfileFiles.tomlFiles(in: "\(repositoryRoot)/profiles").map { ProfileFiles.stem(of: $0) }
        #expect(files == EmbeddedProfiles.texts.keys.sorted())
        #expect(files == builtInNames)
    }

    /// worker.toml documents the defaults: it must say exactly what `Profile()` says.
    @Test func workerSpellsOutTheDefaults() throws {
        var worker = try embeddedOnly { try $0.load("worker") }
        worker.description = ""
        worker.source = ""
        #expect(worker == Profile(name: "worker"))
    }

    @Test func explorerIsReadOnlyButTmp() throws {
        let explorer = try embeddedOnly { try $0.load("explorer") }
        #expect(explorer.filesystem.workdir == .readOnly)
        #expect(explorer.filesystem.homeWritable == false)
        #expect(explorer.capabilities.keep.isEmpty)
        #expect(explorer.identity.uid == 0)
        #expect(explorer.network.mode == .loopback)
        #expect(explorer.filesystem.tmpSize > 0)
    }

    @Test func reviewerHasAWritableHomeAndNoNetwork() throws {
        let reviewer = try embeddedOnly { try $0.load("reviewer") }
        #expect(reviewer.filesystem.workdir == .readOnly)
        #expect(reviewer.filesystem.homeWritable)
        #expect(reviewer.network.mode == .none)
        #expect(reviewer.capabilities.keep.isEmpty)
    }

    @Test func untrustedIsTheStrictest() throws {
        let untrusted = try embeddedOnly { try $0.load("untrusted") }
        #expect(untrusted.identity.uid == 1000)
        #expect(untrusted.identity.gid == 1000)
        #expect(untrusted.capabilities.keep.isEmpty)
        #expect(untrusted.network.mode == .none)
        #expect(untrusted.limits.memory == 1 << 30)
        #expect(untrusted.limits.pids == 256)
        #expect(untrusted.limits.cpus == 1)
        #expect(untrusted.limits.openFiles == 256)
        #expect(untrusted.limits.fileSize == 1 << 30)
        #expect(untrusted.limits.timeout == 300)
        #expect(untrusted.filesystem.tmpSize == 256 << 20)
        #expect(untrusted.filesystem.workdir == .readWrite)
        #expect(untrusted.environment.keep == ["TERM"])
        #expect(Set(untrusted.seccomp.deny).isSuperset(of: ["acct", "quotactl", "lookup_dcookie"]))
        #expect(untrusted.filesystem.blocked == Profile.Filesystem.defaultBlocked)
    }

    @Test func ciHasRoomAndCIVariablesOnly() throws {
        let ci = try embeddedOnly { try $0.load("ci") }
        #expect(ci.limits.memory == 8 << 30)
        #expect(ci.limits.pids == 4096)
        #expect(ci.limits.cpus == 2)
        #expect(ci.limits.timeout == 3600)
        #expect(ci.environment.keep == Profile.Environment().keep + ["CI", "BUILD_NUMBER"])
        #expect(ci.capabilities == Profile.Capabilities())
    }

    @Test func availableListsTheBuiltIns() throws {
        let summaries = try embeddedOnly { $0.available() }
        #expect(summaries.map(\.name) == builtInNames)
        #expect(summaries.allSatisfy { $0.source == "embedded:\($0.name)" && $0.error == nil && !$0.description.isEmpty })
    }
}

// MARK: - Rendering

@Suite struct ProfileRenderingTests {
    /// Render, parse back, compare: the TOML output is a faithful profile.
    private func roundTrips(_ profile: Profile) throws {
        let rendered = profile.renderTOML()
        var back = try decode(rendered, file: "rendered.toml")
        back.name = profile.name
        back.source = profile.source
        #expect(back == profile, "\(rendered)")
    }

    @Test(arguments: builtInNames)
    func builtInProfilesRoundTrip(name: String) throws {
        let profile = try withTemporaryDirectory { dir in
            try ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir).load(name)
        }
        try roundTrips(profile)
    }

    @Test func unusualValuesRoundTrip() throws {
        var profile = Profile(name: "odd", description: "quotes \" and \\ and\ttab\nnewline é \u{1}", source: "x")
        profile.limits.cpus = 1.5
        profile.limits.timeout = 0.25
        profile.limits.memory = 1000  // not a multiple of 1KiB: rendered as bytes
        profile.limits.fileSize = 0
        profile.filesystem.tmpSize = 1536 << 20
        profile.filesystem.readWrite = ["/src:/dst"]
        profile.filesystem.homeWritable = false
        profile.environment.set["EMPTY"] = ""
        profile.environment.set["QUOTED"] = "a \"b\""
        profile.gate.maxLines = 0
        try roundTrips(profile)
    }

    @Test func tomlUsesReadableUnits() {
        let text = Profile(name: "worker").renderTOML()
        #expect(text.contains("memory = \"4GiB\"\n"))
        #expect(text.contains("timeout = 0\n"))
        #expect(text.contains("[environment.set]\nPATH = "))
        #expect(!text.contains("extends ="))
    }

    @Test func jsonHoldsBytesAndSeconds() {
        var profile = Profile(name: "j", description: "say \"hi\"", source: "embedded:j")
        profile.limits.timeout = 90
        profile.limits.cpus = 0.5
        let json = profile.renderJSON()
        #expect(json.hasPrefix("{\n  \"name\": \"j\",\n  \"description\": \"say \\\"hi\\\"\",\n"))
        #expect(json.contains("\"memory\": 4294967296,"))
        #expect(json.contains("\"timeout\": 90\n"))
        #expect(json.contains("\"cpus\": 0.5,"))
        #expect(json.contains("\"read_write\": [],"))
        #expect(json.contains("\"set\": {\n      \"PATH\": \"/usr/local/sbin"))
        #expect(json.hasSuffix("}\n}\n"))
    }
}

// MARK: - Validation

@Suite struct ProfileValidationTests {
    @Test func everyKeyIsRead() throws {
        let profile = try decode("""
            description = "all keys"
            extends = "ignored-by-the-decoder"
            [identity]
            uid = 1000
            gid = 100
            hostname = "box-1.local"
            [filesystem]
            read_only = ["/usr", "/data:/mnt/data"]
            read_write = ["/srv/cache"]
            hide = ["/etc/secret"]
            workdir = "ro"
            tmp_size = "512MiB"
            home_size = 67108864
            home = "/root"
            home_writable = false
            blocked = ["~/.kube", "**/secrets.txt", "token", "/var/run/docker.sock"]
            protected = [".hg/hgrc"]
            [network]
            mode = "none"
            [capabilities]
            keep = ["cap_chown", "KILL", "Cap_Setuid", "CHOWN"]
            [seccomp]
            deny = ["acct"]
            allow = ["_llseek"]
            [limits]
            memory = 0
            pids = 10
            cpus = 0.5
            open_files = 1
            file_size = "1.5G"
            timeout = "2m"
            [environment]
            keep = ["HOME", "XDG_*"]
            set = { EDITOR = "vi" }
            [gate]
            max_lines = 10
            max_bytes = "64KiB"
            forbidden = ["Makefile"]
            tests = ["spec/**"]
            """)
        #expect(profile.description == "all keys")
        #expect(profile.identity == Profile.Identity(uid: 1000, gid: 100, hostname: "box-1.local"))
        #expect(profile.filesystem.readOnly == ["/usr", "/data:/mnt/data"])
        #expect(profile.filesystem.readWrite == ["/srv/cache"])
        #expect(profile.filesystem.hide == ["/etc/secret"])
        #expect(profile.filesystem.workdir == .readOnly)
        #expect(profile.filesystem.tmpSize == 512 << 20)
        #expect(profile.filesystem.homeSize == 64 << 20)
        #expect(profile.filesystem.home == "/root")
        #expect(profile.filesystem.homeWritable == false)
        #expect(profile.filesystem.blocked == ["~/.kube", "**/secrets.txt", "token", "/var/run/docker.sock"])
        #expect(profile.filesystem.protected == [".hg/hgrc"])
        #expect(profile.network.mode == .none)
        #expect(profile.capabilities.keep == ["CHOWN", "KILL", "SETUID"], "normalized and deduplicated")
        #expect(profile.seccomp == Profile.Seccomp(deny: ["acct"], allow: ["_llseek"]))
        #expect(profile.limits.memory == 0)
        #expect(profile.limits.pids == 10)
        #expect(profile.limits.cpus == 0.5)
        #expect(profile.limits.openFiles == 1)
        #expect(profile.limits.fileSize == 3 << 29)
        #expect(profile.limits.timeout == 120)
        #expect(profile.environment.keep == ["HOME", "XDG_*"])
        #expect(profile.environment.set == ["PATH": Profile.Environment().set["PATH"]!, "EDITOR": "vi"])
        #expect(profile.gate.maxLines == 10)
        #expect(profile.gate.maxBytes == 64 << 10)
        #expect(profile.gate.forbidden == ["Makefile"])
        #expect(profile.gate.tests == ["spec/**"])
    }

    @Test func dottedKeysAndSubTablesWork() throws {
        let profile = try decode("""
            limits.memory = "2GiB"
            network.mode = "none"
            [environment.set]
            LANG = "C.UTF-8"
            """)
        #expect(profile.limits.memory == 2 << 30)
        #expect(profile.network.mode == .none)
        #expect(profile.environment.set["LANG"] == "C.UTF-8")
    }

    @Test func listOperationsApplyInOrderReplaceAddRemove() throws {
        // Written in the "wrong" order on purpose: _add and _remove still apply after the replacement.
        let profile = try decode("""
            [capabilities]
            keep_remove = ["CAP_KILL"]
            keep_add = ["NET_BIND_SERVICE", "chown"]
            keep = ["CHOWN", "KILL"]
            """)
        #expect(profile.capabilities.keep == ["CHOWN", "NET_BIND_SERVICE"])
    }

    /// Each bad profile names the file, the line and the key, and says what would be accepted.
    @Test(arguments: badProfiles)
    func errorsNameFileLineAndKey(text: String, line: Int, key: String, message: String) {
        let error = #expect(throws: ProfileError.self) { try decode(text, file: "bad.toml") }
        #expect(error?.file == "bad.toml")
        #expect(error?.line == line, "\(error?.description ?? "")")
        #expect(error?.key == key, "\(error?.description ?? "")")
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "no error") should contain: \(message)")
    }

    /// (profile text, line, key, part of the message)
    static let badProfiles: [(String, Int, String, String)] = [
        ("[limits]\nmemry = \"1GiB\"", 2, "limits.memry", "unknown key 'memry' in [limits]; did you mean 'memory'?"),
        ("[filesystem]\nblocked_ad = []", 2, "filesystem.blocked_ad", "did you mean 'blocked_add'?"),
        ("[limits]\nzzzzzz = 1", 2, "limits.zzzzzz", "known keys: memory, pids"),
        ("[limit]\nmemory = 1", 1, "limit", "unknown table [limit]; did you mean [limits]?"),
        ("memory = 1", 1, "memory", "it belongs in [limits]"),
        ("descripton = \"x\"", 1, "descripton", "did you mean 'description'?"),
        ("[limits]\nmemory_add = [1]", 2, "limits.memory_add", "[limits] has no list keys; set 'memory' instead"),
        ("[identity]\nuid_add = 1", 2, "identity.uid_add", "[identity] has no list keys; set 'uid' instead"),
        ("[filesystem]\nhome_remove = []", 2, "filesystem.home_remove", "only list keys take _remove (in [filesystem]: blocked, hide"),
        ("limits = 5", 1, "limits", "expected a table [limits], found an integer"),
        ("description = 5", 1, "description", "expected a string in quotes, found an integer"),
        ("extends = true", 1, "extends", "expected a string in quotes, found a boolean"),
        ("[limits]\npids = \"many\"", 2, "limits.pids", "expected an integer, found a string"),
        ("[limits]\npids = -1", 2, "limits.pids", "-1 is out of range; expected an integer between 0 and 4194304"),
        ("[limits]\nopen_files = 0", 2, "limits.open_files", "between 1 and 1048576"),
        ("[limits]\ncpus = -0.5", 2, "limits.cpus", "expected a number of at least 0"),
        ("[limits]\ncpus = \"2\"", 2, "limits.cpus", "expected a number, found a string"),
        ("[limits]\nmemory = \"12XB\"", 2, "limits.memory", "unknown size unit 'XB'"),
        ("[limits]\nmemory = \"4GB\"", 2, "limits.memory", "ambiguous (decimal or binary?); write 4GiB"),
        ("[limits]\nmemory = \"lots\"", 2, "limits.memory", "is not a size"),
        ("[limits]\nmemory = -1", 2, "limits.memory", "cannot be negative"),
        ("[limits]\nmemory = 1.5", 2, "limits.memory", "expected a size"),
        ("[limits]\nmemory = \"99999999TiB\"", 2, "limits.memory", "too large"),
        ("[filesystem]\ntmp_size = 0", 2, "filesystem.tmp_size", "must be larger than 0"),
        ("[filesystem]\nhome_size = \"0MiB\"", 2, "filesystem.home_size", "must be larger than 0"),
        ("[limits]\ntimeout = \"5 minutes\"", 2, "limits.timeout", "unknown duration unit 'minutes'"),
        ("[limits]\ntimeout = -3", 2, "limits.timeout", "cannot be negative"),
        ("[capabilities]\nkeep = [\"CAP_SYS_ADMIN\"]", 2, "capabilities.keep", "SYS_ADMIN cannot be kept: it allows mount"),
        ("[capabilities]\nkeep = [\n  \"CHOWN\",\n  \"net_raw\",\n]", 4, "capabilities.keep", "NET_RAW cannot be kept"),
        ("[capabilities]\nkeep_add = [\"CHWON\"]", 2, "capabilities.keep_add", "unknown capability; did you mean \"CHOWN\"?"),
        ("[capabilities]\nkeep = \"CHOWN\"", 2, "capabilities.keep", "expected an array of strings"),
        ("[capabilities]\nkeep = [\n\"CHOWN\",\n3]", 4, "capabilities.keep", "expected every entry to be a string"),
        ("[identity]\nhostname = \"my_host\"", 2, "identity.hostname", "not a valid hostname"),
        ("[identity]\nhostname = \"\"", 2, "identity.hostname", "not a valid hostname"),
        ("[identity]\nhostname = \"-lead\"", 2, "identity.hostname", "starting and ending with a letter or digit"),
        ("[identity]\nhostname = \"\(String(repeating: "a", count: 65))\"", 2, "identity.hostname", "1 to 64"),
        ("[identity]\nuid = 65536", 2, "identity.uid", "between 0 and 65535"),
        ("[identity]\ngid = \"0\"", 2, "identity.gid", "expected an integer"),
        ("[filesystem]\nworkdir = \"rx\"", 2, "filesystem.workdir", "expected \"rw\" (writable) or \"ro\""),
        ("[filesystem]\nhome_writable = \"yes\"", 2, "filesystem.home_writable", "expected true or false"),
        ("[filesystem]\nhome = \"/\"", 2, "filesystem.home", "HOME cannot be /"),
        ("[filesystem]\nhome = \"home\"", 2, "filesystem.home", "absolute path"),
        ("[filesystem]\nread_only = [\"usr\"]", 2, "filesystem.read_only", "\"usr\": expected \"SRC\" or \"SRC:DEST\" with absolute paths"),
        ("[filesystem]\nread_write = [\"/a:/b:/c\"]", 2, "filesystem.read_write", "paths containing ':' are not supported"),
        ("[filesystem]\nread_write = [\"/a:\"]", 2, "filesystem.read_write", "absolute paths"),
        ("[filesystem]\nhide = [\"/etc/../root\"]", 2, "filesystem.hide", "'..' is not allowed"),
        ("[filesystem]\nprotected = [\"../outside\"]", 2, "filesystem.protected", "'..' is not allowed"),
        ("[filesystem]\nprotected = [\"/abs\"]", 2, "filesystem.protected", "relative to the workdir"),
        ("[filesystem]\nblocked = [\"~bob/.ssh\"]", 2, "filesystem.blocked", "not ~user"),
        ("[filesystem]\nblocked = [\"\"]", 2, "filesystem.blocked", "empty path"),
        ("[network]\nmode = \"host\"", 2, "network.mode", "expected \"loopback\" (only lo is up) or \"none\""),
        ("[seccomp]\ndeny = [\"Ptrace\"]", 2, "seccomp.deny", "lowercase name"),
        ("[seccomp]\nallow = [\"\"]", 2, "seccomp.allow", "not a syscall name"),
        ("[environment]\nkeep = [\"*\"]", 2, "environment.keep", "secrets included"),
        ("[environment]\nkeep = [\"1ABC\"]", 2, "environment.keep", "not a valid variable name"),
        ("[environment]\nset = { \"1X\" = \"v\" }", 2, "environment.set.1X", "not a valid variable name"),
        ("[environment]\nset = { X = 1 }", 2, "environment.set.X", "expected a string"),
        ("[environment]\nset = [\"X=1\"]", 2, "environment.set", "expected a table of NAME = \"value\""),
        ("[gate]\nmax_lines = 1.5", 2, "gate.max_lines", "expected an integer, found a float"),
        ("[gate]\ntests = [\"/abs/**\"]", 2, "gate.tests", "relative to the workdir"),
    ]

    @Test func errorDescriptionIsFileLineKeyMessage() {
        let error = #expect(throws: ProfileError.self) { try decode("\n[limits]\nmemry = 1", file: "profiles/x.toml") }
        #expect(error?.description == "profiles/x.toml:3: limits.memry: unknown key 'memry' in [limits]; did you mean 'memory'?")
        #expect(error?.exitCode == 125)
    }

    @Test(arguments: Array(Profile.Capabilities.forbidden).sorted())
    func everyForbiddenCapabilityIsRejectedWithAReason(name: String) {
        let error = #expect(throws: ProfileError.self) { try decode("capabilities.keep = [\"cap_\(name.lowercased())\"]") }
        #expect(error?.message.hasPrefix("\"cap_\(name.lowercased())\": \(name) cannot be kept: ") == true)
        #expect(error?.message.hasSuffix("sandboxd never grants it") == false, "add a reason for \(name) to CapabilityNames.whyForbidden")
    }

    @Test func defaultsOnlyKeepKnownAllowedCapabilities() {
        for name in Profile.Capabilities().keep {
            #expect(CapabilityNames.known.contains(name))
            #expect(!Profile.Capabilities.forbidden.contains(name))
        }
        #expect(Profile.Capabilities.forbidden.isSubset(of: CapabilityNames.known))
    }
}

// MARK: - Units

@Suite struct ProfileUnitTests {
    static let sizes: [(String, UInt64)] = [
        ("0", 0), ("100", 100), ("512MiB", 512 << 20), ("4GiB", 4 << 30), ("1G", 1 << 30),
        ("100M", 100 << 20), ("64KiB", 64 << 10), ("64k", 64 << 10), ("2TiB", 2 << 40), ("10B", 10),
        ("1.5GiB", 3 << 29), ("512 MiB", 512 << 20), ("1_024", 1024),
    ]

    @Test(arguments: sizes)
    func sizesParse(text: String, bytes: UInt64) throws {
        #expect(try ByteSize.parse(text).get() == bytes)
    }

    static let byteCounts: [UInt64] = [0, 1, 1000, 1024, 1536 << 20, 4 << 30, 3 << 40, .max, .max - 1023]

    @Test(arguments: byteCounts)
    func sizesFormatAndParseBack(bytes: UInt64) throws {
        #expect(try ByteSize.parse(ByteSize.format(bytes)).get() == bytes)
    }

    @Test func sizesFormatInTheLargestExactUnit() {
        #expect(ByteSize.format(4 << 30) == "4GiB")
        #expect(ByteSize.format(1536 << 20) == "1536MiB")
        #expect(ByteSize.format(64 << 10) == "64KiB")
        #expect(ByteSize.format(1000) == "1000")
    }

    static let durations: [(String, Double)] = [
        ("30s", 30), ("5m", 300), ("1h", 3600), ("1.5h", 5400), ("250ms", 0.25), ("90", 90), (" 2 m ", 120),
    ]

    @Test(arguments: durations)
    func durationsParse(text: String, seconds: Double) throws {
        #expect(try DurationText.parse(text).get() == seconds)
    }

    @Test func suggestionsNeedToBeClose() {
        #expect(Suggest.closest(to: "memry", in: ["memory", "pids"]) == "memory")
        #expect(Suggest.closest(to: "hostnme", in: ["uid", "gid", "hostname"]) == "hostname")
        #expect(Suggest.closest(to: "banana", in: ["uid", "gid"]) == nil)
        #expect(Suggest.distance("kitten", "sitting") == 3)
    }
}

// MARK: - Lookup and extends

@Suite struct ProfileLoaderTests {
    @Test func lookupOrderIsCwdThenEnvironmentThenSystemThenEmbedded() throws {
        try withTemporaryDirectory { dir in
            for place in ["cwd/profiles", "env1", "env2", "system"] {
                try writeFile("\(dir)/\(place)/worker.toml", "description = \"from \(place)\"\n")
            }
            let loader = ProfileLoader(
                cwd: "\(dir)/cwd", environment: ["SANDBOXD_PROFILES": "\(dir)/env1::\(dir)/env2"],
                homeDirectory: dir, systemDirectory: "\(dir)/system")
            let order = [
                ("cwd/profiles", "profiles/worker.toml"), ("env1", "\(dir)/env1/worker.toml"),
                ("env2", "\(dir)/env2/worker.toml"), ("system", "\(dir)/system/worker.toml"),
            ]
            for (place, source) in order {
                let profile = try loader.load("worker")
                #expect(profile.description == "from \(place)")
                #expect(profile.source == source)
                #expect(profile.name == "worker")
                #expect(loader.available().first { $0.name == "worker" }?.source == source)
                #expect(unlink("\(dir)/\(place)/worker.toml") == 0)
            }
            #expect(try loader.load("worker").source == "embedded:worker")
        }
    }

    @Test func relativeEnvironmentDirectoriesAreRelativeToCwd() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/mine/p.toml", "description = \"mine\"\n")
            let loader = ProfileLoader(cwd: dir, environment: ["SANDBOXD_PROFILES": "mine"], homeDirectory: dir, systemDirectory: dir)
            #expect(try loader.load("p").source == "mine/p.toml")
        }
    }

    @Test func pathsAreRelativeToCwdOrHome() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/work/sub/a.toml", "description = \"a\"\n")
            try writeFile("\(dir)/home/b.toml", "description = \"b\"\n")
            try writeFile("\(dir)/work/c", "description = \"c\"\n")
            let loader = ProfileLoader(cwd: "\(dir)/work", environment: [:], homeDirectory: "\(dir)/home", systemDirectory: dir)
            #expect(try loader.load("sub/a.toml").description == "a")
            #expect(try loader.load("./sub/../sub/a.toml").source == "sub/a.toml")
            #expect(try loader.load("\(dir)/work/sub/a.toml").name == "a")
            #expect(try loader.load("~/b.toml").source == "\(dir)/home/b.toml")
            #expect(try loader.load("./c").name == "c")
            let missing = #expect(throws: ProfileError.self) { try loader.load("sub/none.toml") }
            #expect(missing?.message == "no profile file at sub/none.toml")
        }
    }

    @Test func unknownNameListsWhatIsAvailable() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/profiles/local.toml", "")
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let error = #expect(throws: ProfileError.self) { try loader.load("wroker") }
            #expect(error?.file == "wroker")
            #expect(error?.message.contains("no profile named 'wroker'; available: ci, explorer, local, reviewer, untrusted, worker") == true)
        }
    }

    @Test func extendsOverridesKeyByKeyAndEditsLists() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/profiles/base.toml", """
                description = "base"
                [limits]
                memory = "2GiB"
                pids = 100
                [filesystem]
                blocked = ["~/.ssh", "**/.npmrc", "~/.aws"]
                [environment]
                set = { A = "1", B = "2" }
                """)
            try writeFile("\(dir)/profiles/child.toml", """
                extends = "base"
                [limits]
                pids = 50
                [filesystem]
                blocked_add = ["~/.kube", "~/.ssh"]
                blocked_remove = ["**/.npmrc"]
                [capabilities]
                keep_remove = ["cap_kill", "SETUID"]
                [environment]
                keep_add = ["EDITOR"]
                set = { B = "two", C = "3" }
                """)
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let child = try loader.load("child")
            #expect(child.name == "child")
            #expect(child.source == "profiles/child.toml")
            #expect(child.description == "base", "inherited when the child sets none")
            #expect(child.limits.memory == 2 << 30, "inherited")
            #expect(child.limits.pids == 50, "overridden")
            #expect(child.filesystem.blocked == ["~/.ssh", "~/.aws", "~/.kube"])
            #expect(child.capabilities.keep == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID"])
            #expect(child.environment.keep == Profile.Environment().keep + ["EDITOR"])
            #expect(child.environment.set == ["PATH": Profile.Environment().set["PATH"]!, "A": "1", "B": "two", "C": "3"])
        }
    }

    @Test func extendsBuiltInByNameAndChildDescriptionWins() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/profiles/tight.toml", """
                extends = "untrusted"
                description = "tighter"
                limits.pids = 64
                """)
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let tight = try loader.load("tight")
            #expect(tight.description == "tighter")
            #expect(tight.limits.pids == 64)
            #expect(tight.identity.uid == 1000)
        }
    }

    @Test func relativeExtendsPathsStartFromTheExtendingFile() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/shared/base.toml", "limits.pids = 7\n")
            try writeFile("\(dir)/project/profiles/p.toml", "extends = \"../../shared/base.toml\"\n")
            let loader = ProfileLoader(cwd: "\(dir)/project", environment: [:], homeDirectory: dir, systemDirectory: dir)
            #expect(try loader.load("p").limits.pids == 7)
        }
    }

    @Test func extendsCycleIsNamed() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/profiles/a.toml", "extends = \"b\"\n")
            try writeFile("\(dir)/profiles/b.toml", "# b\nextends = \"../c.toml\"\n")
            try writeFile("\(dir)/c.toml", "\n\nextends = \"a\"\n")
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let error = #expect(throws: ProfileError.self) { try loader.load("a") }
            #expect(error?.file == "c.toml")
            #expect(error?.line == 3)
            #expect(error?.key == "extends")
            #expect(error?.message == "extends cycle: profiles/a.toml -> profiles/b.toml -> c.toml -> profiles/a.toml")
        }
    }

    @Test func extendingYourOwnNameSuggestsTheEmbeddedForm() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/profiles/worker.toml", "extends = \"worker\"\n")
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let error = #expect(throws: ProfileError.self) { try loader.load("worker") }
            #expect(error?.message.contains("write extends = \"embedded:worker\"") == true)

            try writeFile("\(dir)/profiles/worker.toml", "extends = \"embedded:worker\"\nlimits.pids = 9\n")
            let worker = try loader.load("worker")
            #expect(worker.limits.pids == 9)
            #expect(worker.description.hasPrefix("Default for coding agents"), "inherited from the built-in worker")
            #expect(worker.source == "profiles/worker.toml")
        }
    }

    @Test func unknownParentIsReportedAtTheExtendsLine() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/profiles/p.toml", "# comment\nextends = \"nope\"\n")
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let error = #expect(throws: ProfileError.self) { try loader.load("p") }
            #expect(error?.file == "profiles/p.toml")
            #expect(error?.line == 2)
            #expect(error?.key == "extends")
            #expect(error?.message.hasPrefix("no profile named 'nope'; available: ") == true)
        }
    }

    @Test func errorsInAParentNameTheParentFile() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/profiles/parent.toml", "[network]\nmode = \"bridge\"\n")
            try writeFile("\(dir)/profiles/child.toml", "extends = \"parent\"\n")
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let error = #expect(throws: ProfileError.self) { try loader.load("child") }
            #expect(error?.file == "profiles/parent.toml")
            #expect(error?.line == 2)
            #expect(error?.key == "network.mode")
        }
    }

    @Test func availableShowsBrokenProfilesWithTheirError() throws {
        try withTemporaryDirectory { dir in
            try writeFile("\(dir)/profiles/broken.toml", "[limits]\nmemry = 1\n")
            try writeFile("\(dir)/profiles/notes.txt", "not a profile")
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let summaries = loader.available()
            #expect(summaries.map(\.name) == ["broken"] + builtInNames)
            let broken = try #require(summaries.first)
            #expect(broken.source == "profiles/broken.toml")
            #expect(broken.error?.line == 2)
        }
    }

    @Test func unreadableInputIsReported() throws {
        try withTemporaryDirectory { dir in
            #expect(mkdir("\(dir)/profiles", 0o755) == 0)
            #expect(mkdir("\(dir)/profiles/dir.toml", 0o755) == 0)
            let bytes: [UInt8] = Array("x = 1\n".utf8) + [0xC3, 0x28]
            let fd = open("\(dir)/profiles/bad-utf8.toml", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            let loader = ProfileLoader(cwd: dir, environment: [:], homeDirectory: dir, systemDirectory: dir)
            let directory = #expect(throws: ProfileError.self) { try loader.load("dir") }
            #expect(directory?.message == "not a regular file")
            let utf8 = #expect(throws: ProfileError.self) { try loader.load("bad-utf8") }
            #expect(utf8?.message == "is not valid UTF-8 text")
            #expect(utf8?.file == "profiles/bad-utf8.toml")
        }
    }
}

// MARK: - Temporary files (Glibc: the code under test avoids Foundation, so its tests do too)

private struct TestFileError: Error, CustomStringConvertible {
    var description: String
}

/// Runs `body` in a fresh directory from mkdtemp, removed afterwards even when `body` throws.
private func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    var template = Array("/tmp/sandboxd-profile-test-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
        throw TestFileError(description: "mkdtemp failed: \(String(cString: strerror(errno)))")
    }
    let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    defer { removeTree(path) }
    return try body(path)
}

/// `rm -rf path`, children first, never following symlinks.
private func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if info.st_mode & S_IFMT == S_IFDIR, let dir = opendir(path) {
        var children: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { children.append(name) }
        }
        closedir(dir)
        for child in children { removeTree(path + "/" + child) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// Writes `text` to `path`, creating parent directories.
private func writeFile(_ path: String, _ text: String) throws {
    var parent = ""
    for component in path.split(separator: "/").dropLast() {
        parent += "/" + component
        if mkdir(parent, 0o755) != 0 && errno != EEXIST {
            throw TestFileError(description: "mkdir \(parent): \(String(cString: strerror(errno)))")
        }
    }
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw TestFileError(description: "open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count else { throw TestFileError(description: "short write to \(path)") }
}

private func readFile(_ path: String) throws -> String {
    switch ProfileFiles.read(path) {
    case .success(let text): return text
    case .failure(let problem): throw TestFileError(description: "\(path): \(problem.message)")
    }
}
