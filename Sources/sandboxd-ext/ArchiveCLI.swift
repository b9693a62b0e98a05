import ArgumentParser
import Glibc
import SandboxExt

/// What export and import share: the store of this process, the workflow id, error exits, sizes.
enum ArchiveCLI {
    static func environment() -> [String: String] {
        var env: [String: String] = [:]
        var entry: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let current = entry, let pointer = current.pointee {
            let pair = String(cString: pointer)
            if let eq = pair.firstIndex(of: "=") { env[String(pair[..<eq])] = String(pair[pair.index(after: eq)...]) }
            entry = current + 1
        }
        return env
    }

    static func store() -> SandboxStore {
        let env = environment()
        var home = env["HOME"] ?? ""
        if home.isEmpty, let pw = getpwuid(geteuid()), let dir = pw.pointee.pw_dir { home = String(cString: dir) }
        var cwd = "/"
        if let p = getcwd(nil, 0) { cwd = String(cString: p); free(p) }
        return SandboxStore(root: SandboxStore.defaultRoot(environment: env, cwd: cwd, home: home))
    }

    static func workflow(_ explicit: String?) -> String { AuditLog.workflowID(explicit, environment: environment()) }

    static func warn(_ message: String) {
        let line = "sandboxd: \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    }

    static func run(_ body: () throws(SandboxError) -> Int32) throws {
        switch Result(catching: body) {
        case .success(let code): if code != 0 { throw ArgumentParser.ExitCode(code) }
        case .failure(let e):
            warn(e.message)
            throw ArgumentParser.ExitCode(e.exitCode)
        }
    }

    /// "64GiB", "500M", "1048576" -> bytes.
    static func size(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: " ")
        let digits = t.prefix(while: { $0.isNumber })
        guard let n = UInt64(digits) else { return nil }
        let unit = t.dropFirst(digits.count).lowercased()
        let shift: UInt64
        switch unit {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        case "t", "tb", "tib": shift = 40
        default: return nil
        }
        let (v, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : v
    }

    static func megabytesPerSecond(_ bytes: UInt64, _ seconds: Double) -> String {
        guard seconds > 0 else { return "-" }
        let v = Double(bytes) / seconds / 1_048_576
        return String(Int(v.rounded()))
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}
