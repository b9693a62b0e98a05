import Glibc

/// Host paths as the bytes the kernel knows them by.
///
/// A file name is any bytes but "/" and NUL. A Swift `String` cannot hold
/// bytes that are not UTF-8 (decoding repairs them to U+FFFD, another name),
/// and it compares by canonical equivalence ("é" and "e" + U+0301 are equal
/// strings but two files). Code that must name one particular file, such as
/// the blocked-path masks, works on these bytes instead.
enum RawPath {
    static let slash = UInt8(ascii: "/")

    /// `body` with `path` as a NUL-terminated C string.
    static func withCString<T>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        (path + [0]).withUnsafeBufferPointer { body(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self)) }
    }

    static func lstat(_ path: [UInt8]) -> stat? {
        var st = stat()
        return withCString(path) { Glibc.lstat($0, &st) } == 0 ? st : nil
    }

    /// realpath(3); nil if the path does not resolve.
    static func resolved(_ path: [UInt8]) -> [UInt8]? {
        guard let p = withCString(path, { realpath($0, nil) }) else { return nil }
        defer { free(p) }
        return Array(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }

    /// Whether `path` is `base` or lies below it (both absolute and normalized), byte for byte.
    static func isWithin(_ path: [UInt8], _ base: [UInt8]) -> Bool {
        if base == [slash] { return path.first == slash }
        return path.starts(with: base) && (path.count == base.count || path[base.count] == slash)
    }

    /// The names in directory `dir` but "." and "..", unsorted; nil (errno set) if it cannot be read.
    static func entries(_ dir: [UInt8]) -> [[UInt8]]? {
        guard let d = withCString(dir, { opendir($0) }) else { return nil }
        defer { closedir(d) }
        var names: [[UInt8]] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { names.append(name) }
        }
        return names
    }

    /// fnmatch(3) of `name` against `pattern`, flags 0.
    static func matches(_ pattern: String, _ name: [UInt8]) -> Bool {
        withCString(name) { fnmatch(pattern, $0, 0) } == 0
    }

    /// For messages and plans: the path as text, each byte of an invalid UTF-8
    /// sequence written `\xNN` (the path itself is never rebuilt from this).
    static func display(_ path: [UInt8]) -> String {
        if let text = String(validating: path, as: UTF8.self) { return text }
        var out = ""
        var parser = Unicode.UTF8.ForwardParser()
        var bytes = path.makeIterator()
        var at = 0
        while true {
            switch parser.parseScalar(from: &bytes) {
            case .valid(let encoded):
                out.unicodeScalars.append(Unicode.UTF8.decode(encoded))
                at += encoded.count
            case .error(let length):
                for byte in path[at..<(at + length)] {
                    let hex = String(byte, radix: 16, uppercase: true)
                    out += "\\x" + (byte < 16 ? "0" : "") + hex
                }
                at += length
            case .emptyInput:
                return out
            }
        }
    }
}
