/// The small text format of sandboxd's workspace metadata: one `key value` pair per line, the
/// value running to the end of the line; a key may repeat. Lines starting with `#` are comments.
struct KeyValueText: Equatable {
    var pairs: [(String, String)] = []

    static func == (a: KeyValueText, b: KeyValueText) -> Bool {
        a.pairs.map { $0.0 + " " + $0.1 } == b.pairs.map { $0.0 + " " + $0.1 }
    }

    init() {}

    init(parsing text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("#") { continue }
            if let sp = line.firstIndex(of: " ") {
                pairs.append((String(line[..<sp]), String(line[line.index(after: sp)...])))
            } else {
                pairs.append((String(line), ""))
            }
        }
    }

    subscript(key: String) -> String? {
        pairs.first { $0.0 == key }?.1
    }

    func all(_ key: String) -> [String] {
        pairs.filter { $0.0 == key }.map(\.1)
    }

    mutating func add(_ key: String, _ value: String) {
        pairs.append((key, Self.oneLine(value)))
    }

    mutating func set(_ key: String, _ value: String?) {
        pairs.removeAll { $0.0 == key }
        if let value { add(key, value) }
    }

    var text: String { pairs.map { $0.1.isEmpty ? $0.0 : "\($0.0) \($0.1)" }.joined(separator: "\n") + "\n" }

    static func oneLine(_ s: String) -> String {
        String(s.unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : Character($0) })
    }
}

/// Formatting helpers shared by the workspace reports.
enum WorkspaceText {
    /// "1.5 KiB", "3 MiB", "120 B".
    static func bytes(_ n: UInt64) -> String {
        if n < 1024 { return "\(n) B" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var v = Double(n) / 1024
        var u = 0
        while v >= 1024 && u + 1 < units.count {
            v /= 1024
            u += 1
        }
        let tenths = Int((v * 10).rounded())
        return tenths % 10 == 0 ? "\(tenths / 10) \(units[u])" : "\(tenths / 10).\(tenths % 10) \(units[u])"
    }

    /// "in 5m", "3h ago", "never".
    static func relative(_ when: Int64, now: Int64) -> String {
        if when == 0 { return "never" }
        let d = when - now
        let a = d < 0 ? -d : d
        let s: String
        if a < 60 { s = "\(a)s" } else if a < 3600 { s = "\(a / 60)m" } else if a < 86400 { s = "\(a / 3600)h" } else { s = "\(a / 86400)d" }
        return d >= 0 ? "in \(s)" : "\(s) ago"
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }
}
