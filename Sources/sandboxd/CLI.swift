import Glibc

/// What the subcommands share: the host facts they pass on, and stderr.
enum CLI {
    static func warn(_ message: String) {
        let line = "sandboxd: \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    }
}

struct HostFacts {
    var cwd: String
    var home: String
    var environment: [String: String]

    static func current() -> HostFacts {
        var environment: [String: String] = [:]
        var entry: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let current = entry, let pointer = current.pointee {
            let pair = String(cString: pointer)
            if let equals = pair.firstIndex(of: "=") {
                environment[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            entry = current + 1
        }
        var cwd = "/"
        if let pointer = getcwd(nil, 0) {
            cwd = String(cString: pointer)
            free(pointer)
        }
        var home = environment["HOME"] ?? ""
        if home.isEmpty, let pw = getpwuid(geteuid()), let dir = pw.pointee.pw_dir { home = String(cString: dir) }
        return HostFacts(cwd: cwd, home: home.isEmpty ? "/" : home, environment: environment)
    }
}
