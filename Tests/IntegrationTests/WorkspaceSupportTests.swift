// Helpers for the Workspace*Tests suites: temporary repositories built with the git CLI, the
// sandboxd binary, and byte-for-byte snapshots of a git directory.
import Foundation
import Testing

@testable import SandboxExt

/// A temporary directory (mkdtemp), removed when `body` returns or throws.
func withWorkspaceTemp<R>(_ body: (String) throws -> R) throws -> R {
    var template = Array("/tmp/sandboxd-ws-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw SandboxError("mkdtemp failed") }
    let dir = String(cString: p)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try body(dir)
}

struct WSResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum WS {
    /// The environment for git and sandboxd in tests: no user or system git config, fixed identity.
    static func environment(stateDir: String? = nil) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        env["GIT_CONFIG_GLOBAL"] = "/dev/null"
        env["GIT_AUTHOR_NAME"] = "Fixture"
        env["GIT_AUTHOR_EMAIL"] = "fixture@example.invalid"
        env["GIT_COMMITTER_NAME"] = "Fixture"
        env["GIT_COMMITTER_EMAIL"] = "fixture@example.invalid"
        env["GIT_TERMINAL_PROMPT"] = "0"
        if let stateDir { env["SANDBOXD_HOME"] = stateDir }
        return env
    }

    static func launch(_ exe: String, _ args: [String], cwd: String? = nil, env: [String: String]) throws -> (Process, Pipe, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return (p, out, err)
    }

    static func finish(_ t: (Process, Pipe, Pipe)) -> WSResult {
        // Read before waiting so a full pipe cannot stall the child.
        let o = t.1.fileHandleForReading.readDataToEndOfFile()
        let e = t.2.fileHandleForReading.readDataToEndOfFile()
        t.0.waitUntilExit()
        return WSResult(status: t.0.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                        stderr: String(decoding: e, as: UTF8.self))
    }

    static func run(_ exe: String, _ args: [String], cwd: String? = nil, env: [String: String]) throws -> WSResult {
        finish(try launch(exe, args, cwd: cwd, env: env))
    }

    static let gitPath: String = {
        for p in ["/usr/bin/git", "/usr/local/bin/git", "/bin/git"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        return "/usr/bin/git"
    }()

    /// Runs git in `dir`; fails the test (throws) when git fails.
    @discardableResult
    static func git(_ dir: String, _ args: String...) throws -> String {
        try gitArgs(dir, args)
    }

    @discardableResult
    static func gitArgs(_ dir: String, _ args: [String]) throws -> String {
        let r = try run(gitPath, ["-C", dir] + args, env: environment())
        if r.status != 0 { throw SandboxError("git \(args.joined(separator: " ")) failed in \(dir): \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The sandboxd binary: next to the test bundle, else in .build-ws or .build under the package.
    static let binary: String = {
        var candidates: [String] = []
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        candidates.append(bundleDir.appendingPathComponent("sandboxd-ext").path)
        candidates.append(bundleDir.deletingLastPathComponent().appendingPathComponent("sandboxd-ext").path)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build-ws/debug/sandboxd-ext").path)
        candidates.append(root.appendingPathComponent(".build/debug/sandboxd-ext").path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[2]
    }()

    static func sandboxd(_ args: [String], cwd: String? = nil, stateDir: String) throws -> WSResult {
        try run(binary, args, cwd: cwd, env: environment(stateDir: stateDir))
    }

    static func write(_ path: String, _ text: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    static func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    /// A repository with one commit: the files given (path -> content).
    static func makeRepo(_ dir: String, files: [String: String]) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try git(dir, "init", "-q", "-b", "main")
        for (path, content) in files { try write(dir + "/" + path, content) }
        try git(dir, "add", "-A")
        try git(dir, "commit", "-q", "-m", "initial")
    }

    static let standardFiles: [String: String] = [
        "README.md": "# Project\n",
        "src/a.swift": "let a = 1\n",
        "src/b.swift": "let b = 2\n",
        "docs/guide.md": "guide\n",
        "Tests/FooTests.swift": "// tests of Foo\n",
        ".github/workflows/ci.yml": "on: push\n",
    ]

    /// Every file under a git directory with its bytes, plus `git for-each-ref`: equal snapshots
    /// mean nothing in the repository changed.
    static func snapshot(repo: String) throws -> [String: Data] {
        let gitDir = repo.hasSuffix(".git") ? repo : repo + "/.git"
        var out: [String: Data] = [
            "(for-each-ref)": Data(try git(repo, "for-each-ref", "--format=%(objectname) %(refname)").utf8),
        ]
        let fm = FileManager.default
        guard let e = fm.enumerator(atPath: gitDir) else { return out }
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: gitDir + "/" + rel, isDirectory: &isDir), !isDir.boolValue {
                out[rel] = fm.contents(atPath: gitDir + "/" + rel) ?? Data()
            }
        }
        return out
    }

    /// The keys whose values differ between two snapshots (for failure messages).
    static func differences(_ a: [String: Data], _ b: [String: Data]) -> [String] {
        Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
    }

    /// The pid of a process that has exited (and been reaped): a dead holder.
    static func deadPid() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    static func json(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8))
    }
}
