import Glibc

/// The little file-system access profile loading needs, on Glibc directly:
/// SandboxKit avoids Foundation to keep sandboxd's startup fast.
enum ProfileFiles {
    /// Profiles are a few KiB; a bigger file is almost certainly the wrong file.
    static let maximumSize = 1 << 20

    /// Whether something exists at `path`. Errors other than "not there" count as
    /// existing, so that `read` reports them instead of the lookup silently moving on.
    static func exists(_ path: String) -> Bool {
        var info = stat()
        if stat(path, &info) == 0 { return true }
        return errno != ENOENT && errno != ENOTDIR
    }

    /// The whole file as UTF-8 text.
    static func read(_ path: String) -> Result<String, ValueProblem> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(ValueProblem("cannot open: \(lastError())")) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(ValueProblem("cannot stat: \(lastError())")) }
        guard info.st_mode & S_IFMT == S_IFREG else { return .failure(ValueProblem("not a regular file")) }
        guard Int(info.st_size) <= maximumSize else {
            return .failure(ValueProblem("is larger than 1MiB; profiles are small TOML files, is this the right path?"))
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(ValueProblem("cannot read: \(lastError())"))
            }
            if count == 0 { break }
            bytes += buffer[..<count]
            if bytes.count > maximumSize { return .failure(ValueProblem("is larger than 1MiB")) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(ValueProblem("is not valid UTF-8 text"))
        }
        return .success(text)
    }

    /// Names of the `*.toml` files in `directory`, sorted; empty if it cannot be listed.
    static func tomlFiles(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".toml") && !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted()
    }

    // MARK: Path arithmetic (lexical: profiles are looked up, not canonicalized)

    /// `path` made absolute against `base`, with "." and ".." folded away.
    static func absolute(_ path: String, base: String) -> String {
        normalize(path.hasPrefix("/") ? path : base + "/" + path)
    }

    /// Split and joined on the UTF-8 bytes: Character-wise splitting and the
    /// generic joined(separator:) cost every launch ~0.05 ms here.
    static func normalize(_ path: String) -> String {
        var parts: [Substring.UTF8View] = []
        for part in path.utf8.split(separator: UInt8(ascii: "/")) {
            if part.elementsEqual(".".utf8) { continue }
            if part.elementsEqual("..".utf8) { _ = parts.popLast(); continue }
            parts.append(part)
        }
        var out = ""
        for part in parts {
            out.append("/")
            out.append(contentsOf: Substring(part))
        }
        return out.isEmpty ? "/" : out
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// "profiles/ci.toml" → "ci".
    static func stem(of path: String) -> String {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        return base.hasSuffix(".toml") ? String(base.dropLast(5)) : base
    }

    private static func lastError() -> String {
        String(cString: strerror(errno))
    }
}
