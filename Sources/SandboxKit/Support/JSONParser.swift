/// A small JSON reader (RFC 8259) producing the `JSON` enum: manifests,
/// audit lines and export indexes are read back without Foundation, which
/// would cost start-up time. Integers that fit Int64 stay integers; object
/// keys keep their order (a repeated key: the last one wins on lookup).
public struct JSONParser {
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public var offset: Int
        public var message: String
        public var description: String { "JSON at byte \(offset): \(message)" }
    }

    /// Nesting deeper than this is refused (a hostile file must not exhaust the stack).
    public static let maximumDepth = 256

    private let bytes: [UInt8]
    private var i = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    public static func parse(_ text: String) throws(JSONParser.Error) -> JSON {
        try parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONParser.Error) -> JSON {
        var p = JSONParser(bytes)
        p.skipSpace()
        let value = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == p.bytes.count else { throw p.fail("unexpected data after the value") }
        return value
    }

    private func fail(_ message: String) -> JSONParser.Error { Error(offset: i, message: message) }

    private mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func value(depth: Int) throws(JSONParser.Error) -> JSON {
        guard depth < JSONParser.maximumDepth else { throw fail("nested deeper than \(JSONParser.maximumDepth) levels") }
        guard i < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1
            var fields: [(String, JSON)] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(fields) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try string()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
                i += 1
                skipSpace()
                fields.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(fields) }
                throw fail("expected ',' or '}' in an object")
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JSON] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated array") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail("expected ',' or ']' in an array")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            return try number()
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONParser.Error) {
        let n = word.utf8CodeUnitCount
        guard i + n <= bytes.count else { throw fail("unexpected end of input") }
        let ok = word.withUTF8Buffer { w in (0..<n).allSatisfy { bytes[i + $0] == w[$0] } }
        guard ok else { throw fail("invalid literal") }
        i += n
    }

    private mutating func number() throws(JSONParser.Error) -> JSON {
        let start = i
        var isInteger = true
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < bytes.count, isDigit(bytes[i]) else { throw fail("invalid value") }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < bytes.count, isDigit(bytes[i]) else { throw fail("digits expected after '.'") }
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, isDigit(bytes[i]) else { throw fail("digits expected in the exponent") }
            while i < bytes.count, isDigit(bytes[i]) { i += 1 }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if isInteger, let v = Int64(text) { return .int(v) }
        guard let d = Double(text) else { throw Error(offset: start, message: "invalid number \(text)") }
        return .double(d)
    }

    private func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    private mutating func string() throws(JSONParser.Error) -> String {
        i += 1  // opening quote
        // Fast path: no escapes.
        var j = i
        while j < bytes.count, bytes[j] != 0x22, bytes[j] != 0x5C, bytes[j] >= 0x20 { j += 1 }
        if j < bytes.count, bytes[j] == 0x22 {
            let s = bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[i..<j]), as: UTF8.self) }
            i = j + 1
            return s
        }
        var out = [UInt8]()
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let b = bytes[i]
            if b == UInt8(ascii: "\"") { i += 1; break }
            if b < 0x20 { throw fail("control character in a string") }
            if b != UInt8(ascii: "\\") {
                out.append(b)
                i += 1
                continue
            }
            i += 1
            guard i < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate")
                    }
                    i += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw fail("invalid low surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw fail("unpaired surrogate")
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid code point") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw fail("invalid escape \\\(Character(Unicode.Scalar(e)))")
            }
        }
        // Invalid UTF-8 is repaired rather than refused: these are our own files.
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func hex4() throws(JSONParser.Error) -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[i]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }
}

/// Reading values out of parsed JSON.
extension JSON {
    public subscript(key: String) -> JSON? {
        guard case .object(let fields) = self else { return nil }
        return fields.last(where: { $0.0 == key })?.1
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var intValue: Int64? {
        switch self {
        case .int(let v): return v
        case .double(let d) where d == d.rounded() && abs(d) < 9e18: return Int64(d)
        default: return nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .double(let d): return d
        default: return nil
        }
    }
    public var arrayValue: [JSON]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: [(String, JSON)]? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }

    /// A copy with `key` set (replaced in place if present, appended otherwise).
    public func setting(_ key: String, _ value: JSON) -> JSON {
        guard case .object(var fields) = self else { return self }
        if let idx = fields.firstIndex(where: { $0.0 == key }) { fields[idx].1 = value } else { fields.append((key, value)) }
        return .object(fields)
    }
}

/// A byte-level JSON writer for the store's hot path (the manifest is
/// rewritten twice per exec): the same text as `JSON.rendered`, built in
/// one byte buffer.
extension JSON {
    public func bytes(pretty: Bool = true) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(8192)
        write(into: &out, indent: pretty ? 0 : nil)
        return out
    }

    public func compact() -> String { String(decoding: bytes(pretty: false), as: UTF8.self) }

    private func write(into out: inout [UInt8], indent: Int?) {
        switch self {
        case .null: JSON.append("null", &out)
        case .bool(let b): JSON.append(b ? "true" : "false", &out)
        case .int(let i): JSON.append(String(i), &out)
        case .double(let d): JSON.append(d.isFinite ? String(d) : "null", &out)
        case .string(let s): JSON.quoteBytes(s, into: &out)
        case .array(let items):
            if items.isEmpty { out.append(0x5B); out.append(0x5D); return }
            out.append(0x5B)
            var first = true
            for item in items {
                if !first { out.append(0x2C) }
                first = false
                JSON.newlineBytes(&out, indent.map { $0 + 1 })
                item.write(into: &out, indent: indent.map { $0 + 1 })
            }
            JSON.newlineBytes(&out, indent)
            out.append(0x5D)
        case .object(let fields):
            if fields.isEmpty { out.append(0x7B); out.append(0x7D); return }
            out.append(0x7B)
            var first = true
            for (k, v) in fields {
                if !first { out.append(0x2C) }
                first = false
                JSON.newlineBytes(&out, indent.map { $0 + 1 })
                JSON.quoteBytes(k, into: &out)
                out.append(0x3A)
                if indent != nil { out.append(0x20) }
                v.write(into: &out, indent: indent.map { $0 + 1 })
            }
            JSON.newlineBytes(&out, indent)
            out.append(0x7D)
        }
    }

    @inline(__always) private static func append(_ s: String, _ out: inout [UInt8]) {
        var s = s
        s.withUTF8 { out.append(contentsOf: $0) }
    }

    private static func newlineBytes(_ out: inout [UInt8], _ indent: Int?) {
        guard let indent else { return }
        out.append(0x0A)
        for _ in 0..<(indent * 2) { out.append(0x20) }
    }

    private static func quoteBytes(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { buf in
            var start = 0
            for i in 0..<buf.count {
                let b = buf[i]
                guard b < 0x20 || b == 0x22 || b == 0x5C else { continue }
                if i > start { out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[start..<i])) }
                start = i + 1
                out.append(0x5C)
                switch b {
                case 0x22: out.append(0x22)
                case 0x5C: out.append(0x5C)
                case 0x0A: out.append(0x6E)
                case 0x0D: out.append(0x72)
                case 0x09: out.append(0x74)
                default:
                    let hex: StaticString = "0123456789abcdef"
                    out.append(0x75); out.append(0x30); out.append(0x30)
                    hex.withUTF8Buffer { h in
                        out.append(h[Int(b >> 4)])
                        out.append(h[Int(b & 15)])
                    }
                }
            }
            if buf.count > start { out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[start..<buf.count])) }
        }
        out.append(0x22)
    }
}
