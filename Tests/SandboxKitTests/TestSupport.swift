import Foundation
import Glibc

/// A temporary directory removed when the closure returns, even if it throws.
func withTempDir<T>(_ body: (String) throws -> T) throws -> T {
    var template = Array("/tmp/sandboxd-unit.XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
    let dir = String(cString: p)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try body(dir)
}

func writeTestFile(_ path: String, _ text: String = "x") throws {
    let dir = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try text.write(toFile: path, atomically: false, encoding: .utf8)
}
