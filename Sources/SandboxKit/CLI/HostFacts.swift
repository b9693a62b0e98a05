import Glibc

/// What both front ends (`sandboxd`, `sandboxd-ext`) share: stderr and the host facts they pass on.
public enum CLI {
    public static func warn(_ message: String) {
        let line = "sandboxd: \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    }
}

public struct HostFacts: Sendable {
    public var cwd: String
    public var home: String
    public var environment: [String: String]

    /// Read once per process: the environment, the working directory, HOME (or the passwd entry).
    public static func current() -> HostFacts {
        var environment = [String: String](minimumCapacity: 64) // no rehashing as it fills
        var entry: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let current = entry, let pointer = current.pointee {
            // Split at the first '=' as bytes: per-Character scanning cost ~5 µs a variable.
            if let equals = strchr(pointer, 0x3D) {
                let name = UnsafeRawBufferPointer(start: pointer, count: equals - pointer)
                environment[String(decoding: name, as: UTF8.self)] = String(cString: equals + 1)
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

extension HostFacts {
    /// The state directory of named sandboxes for this process ($SANDBOXD_HOME, else the default).
    public var store: SandboxStore {
        SandboxStore(root: SandboxStore.defaultRoot(environment: environment, cwd: cwd, home: home))
    }

    /// Profile lookup from this process's directory, environment and home.
    public var profileLoader: ProfileLoader {
        ProfileLoader(cwd: cwd, environment: environment, homeDirectory: home)
    }
}
