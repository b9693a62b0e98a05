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

/// A JSON value, written without Foundation. Object keys keep their insertion order.
public indirect enum WorkspaceJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([WorkspaceJSON])
    case object([(String, WorkspaceJSON)])

    public static func == (a: WorkspaceJSON, b: WorkspaceJSON) -> Bool { a.rendered() == b.rendered() }

    public static func str(_ s: String?) -> WorkspaceJSON { s.map { .string($0) } ?? .null }

    /// Compact JSON, or indented with two spaces when `pretty`.
    public func rendered(pretty: Bool = false) -> String {
        var out = ""
        write(into: &out, pretty: pretty, indent: 0)
        return out
    }

    private func write(into out: inout String, pretty: Bool, indent: Int) {
        let nl = pretty ? "\n" : ""
        let pad = { (n: Int) in pretty ? String(repeating: "  ", count: n) : "" }
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .string(let s): Self.quote(s, into: &out)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "[" + nl
            for (k, item) in items.enumerated() {
                out += pad(indent + 1)
                item.write(into: &out, pretty: pretty, indent: indent + 1)
                out += (k + 1 < items.count ? "," : "") + nl
            }
            out += pad(indent) + "]"
        case .object(let members):
            if members.isEmpty { out += "{}"; return }
            out += "{" + nl
            for (k, (key, value)) in members.enumerated() {
                out += pad(indent + 1)
                Self.quote(key, into: &out)
                out += pretty ? ": " : ":"
                value.write(into: &out, pretty: pretty, indent: indent + 1)
                out += (k + 1 < members.count ? "," : "") + nl
            }
            out += pad(indent) + "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
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
