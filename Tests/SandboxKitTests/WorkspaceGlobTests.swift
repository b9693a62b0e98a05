import Testing

@testable import SandboxExt

/// Claims and rule patterns: normalization, matching concrete paths, and the conflict check.
@Suite("Workspace path patterns")
struct WorkspaceGlobTests {
    // MARK: normalization

    @Test("normalization", arguments: [
        ("README.md", "README.md"),
        ("./src//a.swift", "src/a.swift"),
        ("/Sources/Auth/", "Sources/Auth"),
        ("Sources/./Auth/**", "Sources/Auth/**"),
        ("**/**/x", "**/x"),
        ("/", "**"),
        (".", "**"),
        ("a/**/**", "a/**"),
    ])
    func normalize(input: String, expected: String) throws {
        #expect(try PathPattern.normalize(input) == expected)
        #expect(try PathPattern(input).text == expected)
    }

    @Test("invalid patterns are rejected", arguments: ["", "../x", "a/../b", "a/..", "a\nb", "a\0b"])
    func invalid(input: String) {
        #expect(throws: SandboxError.self) { try PathPattern(input) }
    }

    // MARK: matching concrete paths

    @Test("matching concrete paths", arguments: [
        ("README.md", "README.md", true),
        ("README.md", "docs/README.md", false),
        ("*.md", "README.md", true),
        ("*.md", "docs/guide.md", false),
        ("**/*.md", "docs/guide.md", true),
        ("**/*.md", "README.md", true),
        ("**/*.md", "a/b/c/d.md", true),
        ("**/*.md", "a/b/c/d.mdx", false),
        ("Sources/Auth/**", "Sources/Auth/Login.swift", true),
        ("Sources/Auth/**", "Sources/Auth/Deep/Er/X.swift", true),
        ("Sources/Auth/**", "Sources/Authz/X.swift", false),
        ("Sources/Auth/**", "Sources/Auth", true),
        // A pattern covers what is below the path it names.
        ("Sources/Auth", "Sources/Auth/Login.swift", true),
        ("Sources", "SourcesX/a", false),
        ("src/*.swift", "src/a.swift", true),
        ("src/*.swift", "src/sub/a.swift", false),
        ("src/?.swift", "src/a.swift", true),
        ("src/?.swift", "src/ab.swift", false),
        ("src/?.swift", "src/é.swift", true),
        ("src/[ab].swift", "src/b.swift", true),
        ("src/[ab].swift", "src/c.swift", false),
        ("src/[!ab].swift", "src/c.swift", true),
        ("src/[a-c]*.swift", "src/car.swift", true),
        ("src/[a-c]*.swift", "src/dog.swift", false),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        // A literal star in a file name is still matched literally by a literal pattern.
        ("a*b", "a*b", true),
        ("**", "anything/at/all", true),
        ("**/test_*.*", "pkg/test_x.py", true),
        ("**/*Tests.swift", "Tests/FooTests.swift", true),
        ("Tests/**", "Tests/FooTests.swift", true),
        (".github/workflows/**", ".github/workflows/ci.yml", true),
        (".github/workflows/**", ".github/CODEOWNERS", false),
        ("CODEOWNERS", "CODEOWNERS", true),
        ("CODEOWNERS", "docs/CODEOWNERS", false),
        ("*", ".hidden", true),
    ])
    func matches(pattern: String, path: String, expected: Bool) throws {
        #expect(try PathPattern(pattern).matches(path) == expected, "\(pattern) vs \(path)")
    }

    // MARK: conflicts

    /// (a, b, conflict?) — checked in both orders.
    static let overlapCases: [(String, String, Bool)] = [
        // Identical and literal.
        ("README.md", "README.md", true),
        ("README.md", "LICENSE", false),
        ("src/a.swift", "src/b.swift", false),
        // Directories and their contents.
        ("src", "src/a.swift", true),
        ("src/**", "src/a.swift", true),
        ("src/**", "src", true),
        ("src/**", "srcx/a.swift", false),
        ("src/**", "lib/**", false),
        ("Sources/Auth/**", "Sources/**", true),
        ("Sources/Auth/**", "Sources/Billing/**", false),
        // `*` within a segment.
        ("*.md", "README.md", true),
        ("*.md", "docs/guide.md", false),
        ("*.md", "*.swift", false),
        ("*.md", "*", true),
        ("a*", "*b", true),
        ("a*c", "ab*", true),
        ("a*c", "b*", false),
        ("*x*", "*y*", true),
        ("foo*.md", "*bar.md", true),
        ("foo*.md", "*bar.txt", false),
        ("src/*.swift", "src/*/x.swift", true),  // src/a.swift/x.swift
        ("src/*.swift", "lib/*/x.swift", false),
        ("src/*/x.swift", "src/sub/*.swift", true),
        ("src/*.swift", "src/a.swift", true),
        ("src/*.swift", "src/a.md", false),
        // `**` across segments.
        ("**/*.md", "docs/guide.md", true),
        ("**/*.md", "README.md", true),
        ("**/*.md", "src/**", true),
        // A pattern covers the descendants of what it matches, so `x.swift/a.md` is in both.
        ("**/*.md", "*.swift", true),
        ("**/*.md", "src/a.swift", true),
        ("docs/**/*.md", "src/**", false),
        ("**/test/**", "src/**", true),
        ("**/x/y", "a/**/y", true),
        ("a/**/z.swift", "a/b/**", true),
        ("a/**/z.swift", "b/**", false),
        ("**/a/**", "**/b/**", true),
        ("**", "anything", true),
        ("**/*.swift", "**/*.md", true),  // `x.md/y.swift` matches both (descendants)
        ("g0/src/*.swift", "g0/**/*.md", true),  // g0/src/a.swift/b.md
        ("g0/src/*.swift", "g1/**/*.md", false),
        ("g0/*/x.swift", "g0/**/*.md", true),  // g0/a/x.swift/b.md
        ("g0/src/*.swift", "g0/*/x.swift", true),
        ("g0/**", "g1/**", false),
        // `?` and classes.
        ("src/?.swift", "src/ab.swift", false),
        ("src/?.swift", "src/a.swift", true),
        ("src/??.swift", "src/*.swift", true),
        ("src/[ab].swift", "src/c.swift", false),
        ("src/[ab].swift", "src/[bc].swift", true),
        ("src/[ab].swift", "src/[cd].swift", false),
        ("src/[!a].swift", "src/[!b].swift", true),  // negated classes: conservative
        ("src/[a-f]*", "src/z*", false),
        ("src/[a-f]*", "src/c*", true),
        // Deeper structure.
        ("a/b/c", "a/b", true),
        ("a/b/c", "a/c", false),
        ("a/*/c", "a/b/*", true),
        ("a/*/c", "*/b/d", false),
        ("*/*/*", "a/b", true),  // a/b/x matches both: a/b covers its descendants
        ("x/*/*", "x/y/z/w", true),
    ]

    @Test("conflicts between claims", arguments: overlapCases)
    func overlaps(a: String, b: String, expected: Bool) throws {
        let pa = try PathPattern(a), pb = try PathPattern(b)
        #expect(pa.overlaps(pb) == expected, "\(a) vs \(b)")
        #expect(pb.overlaps(pa) == expected, "\(b) vs \(a)")
    }

    /// The check is sound: whenever some concrete path matches both patterns, they are reported
    /// as overlapping (never a missed conflict), over a grid of patterns and paths.
    @Test("no missed conflict over a grid of patterns and paths")
    func soundness() throws {
        let patterns = [
            "**", "*", "*.md", "**/*.md", "a", "a/**", "a/*", "a/*.md", "a/b", "a/b/**", "*/b", "**/b", "a/**/c",
            "?", "a?", "[ab]", "[!a]*", "*b*", "**/c/**", "b/*/c.md", "a/[bc]/*",
        ]
        let paths = [
            "a", "b", "c", "a.md", "b.md", "a/b", "a/c", "a/b.md", "a/b/c", "a/b/c.md", "b/x/c.md", "x/b", "ab",
            "a/c/d", "c/b/a", "x/c/y", "bb", "a/bb/c",
        ]
        let parsed = try patterns.map { try PathPattern($0) }
        for (i, p) in parsed.enumerated() {
            for (j, q) in parsed.enumerated() where j >= i {
                let witness = paths.first { p.matches($0) && q.matches($0) }
                if let witness {
                    #expect(p.overlaps(q), "\(p) and \(q) both match \(witness) but were not reported as overlapping")
                }
            }
        }
    }

    // MARK: lock file names

    @Test("lock file names are a stable, reversible encoding of pattern and worker")
    func lockFileNames() {
        #expect(LockStore.fileName(pattern: "Sources/Auth/**", worker: "w1") == "Sources%2FAuth%2F%2A%2A@w1")
        #expect(LockStore.fileName(pattern: "README.md", worker: "agent-7") == "README.md@agent-7")
        #expect(LockStore.fileName(pattern: "a b@c%", worker: "w") == "a%20b%40c%25@w")
        for p in ["Sources/Auth/**", "a b@c%", "é/ü*.md", "x%2Fy"] {
            #expect(LockStore.percentDecode(String(LockStore.fileName(pattern: p, worker: "w").dropLast(2))) == p)
        }
        // Distinct patterns never share a name.
        #expect(LockStore.fileName(pattern: "a/b", worker: "w") != LockStore.fileName(pattern: "a%2Fb", worker: "w"))
    }

    // MARK: worker names, state paths, formats

    @Test("worker names", arguments: [
        ("w1", true), ("agent-7", true), ("a.b_c", true), ("", false), ("-x", false), (".x", false), ("a/b", false),
        ("a..b", false), ("x.lock", false), ("x.git", false), ("x.meta", false), ("a b", false), ("w@1", false),
        (String(repeating: "a", count: 64), true), (String(repeating: "a", count: 65), false),
    ])
    func workerNames(name: String, valid: Bool) {
        if valid {
            #expect(throws: Never.self) { try Workspace.validateWorkerName(name) }
        } else {
            #expect(throws: SandboxError.self) { try Workspace.validateWorkerName(name) }
        }
    }

    @Test("default state directory")
    func stateDir() {
        #expect(StatePaths.defaultStateDir(uid: 0, home: "/root") == "/var/lib/sandboxd")
        #expect(StatePaths.defaultStateDir(uid: 1000, home: "/home/u") == "/home/u/.local/share/sandboxd")
        #expect(StatePaths.worktreesDir(stateDir: "/s") == "/s/worktrees")
    }

    @Test("repository ids are readable and stable")
    func repoIDs() {
        let a = Workspace.repoID(gitDir: "/src/my repo/.git")
        #expect(a.hasPrefix("my_repo-"))
        #expect(a.count == "my_repo-".count + 12)
        #expect(a == Workspace.repoID(gitDir: "/src/my repo/.git"))
        #expect(a != Workspace.repoID(gitDir: "/other/my repo/.git"))
        #expect(Workspace.repoID(gitDir: "/srv/project.git").hasPrefix("project-"))
    }

    @Test("JSON writer escapes strings")
    func json() {
        let v = JSON.object([("a", .string("q\"\\\n\u{1}é")), ("b", .array([.int(-3), .bool(true), .null]))])
        #expect(v.rendered(pretty: false) == #"{"a":"q\"\\\n\u0001é","b":[-3,true,null]}"#)
    }

    @Test("claim metadata round-trips")
    func claimMetadata() {
        let c = LockClaim(worker: "w1", pattern: "src/**", host: "h", pid: 42, pidStart: 99, acquired: 10, expires: 20)
        #expect(LockClaim(metadata: c.metadata) == c)
        #expect(c.isExpired(now: 20))
        #expect(!c.isExpired(now: 19))
        #expect(!LockClaim(worker: "w", pattern: "x", host: "h", pid: 1, acquired: 0, expires: 0).isExpired(now: .max))
        // Another host: the lease alone decides.
        #expect(c.isReclaimable(now: 21, host: "elsewhere"))
        #expect(!c.isReclaimable(now: 19, host: "elsewhere"))
    }
}
