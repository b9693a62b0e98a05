/// A small TOML reader for profiles.
///
/// Hand-written on purpose: validation errors must point at the line of the
/// offending key *and* of the offending array element, which general-purpose
/// TOML libraries do not keep. It reads the subset profiles need (comments,
/// bare/quoted/dotted keys, `[table]` headers, basic and literal strings,
/// integers, floats, booleans, multi-line arrays, inline tables) and rejects
/// the rest of TOML 1.0 (multi-line strings, dates, `[[arrays of tables]]`,
/// hex/octal/binary integers, inf/nan) with an error naming the line.

/// A parsed value and the line it starts on.
struct TOMLValue: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case string(String)
        case integer(Int64)
        case float(Double)
        case boolean(Bool)
        case array([TOMLValue])
        case table(TOMLTable)
    }
    var kind: Kind
    var line: Int

    /// "a string", "an integer"...: for "expected X, found Y" messages.
    var typeDescription: String {
        switch kind {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .boolean: "a boolean"
        case .array: "an array"
        case .table: "a table"
        }
    }
}

/// A table: keys in the order they were written, each with its line.
struct TOMLTable: Sendable, Equatable {
    struct Entry: Sendable, Equatable {
        var key: String
        var line: Int
        var value: TOMLValue
    }

    /// How a table came to exist; TOML forbids reopening some of them.
    enum Origin: Sendable, Equatable {
        /// Created as the parent of a header (`[a.b]` creates `a`); a later `[a]` may still define it.
        case implicit
        /// Defined by its own `[header]` (or the document root).
        case header
        /// Created by a dotted key (`limits.memory = ...`); more dotted keys may add to it.
        case dotted
        /// `{ ... }`: complete as written, nothing may add to it.
        case inline
    }

    private(set) var entries: [Entry] = []
    var line: Int
    var origin: Origin

    init(line: Int, origin: Origin) {
        self.line = line
        self.origin = origin
    }

    subscript(key: String) -> Entry? {
        entries.first { $0.key == key }
    }

    fileprivate func index(of key: String) -> Int? {
        entries.firstIndex { $0.key == key }
    }

    fileprivate mutating func append(_ entry: Entry) {
        entries.append(entry)
    }

    /// Descends into the sub-table at `index`, lets `body` change it, and stores it back.
    fileprivate mutating func modifyTable<R>(
        at index: Int, _ body: (inout TOMLTable) throws(ProfileError) -> R
    ) throws(ProfileError) -> R {
        guard case .table(var child) = entries[index].value.kind else {
            preconditionFailure("modifyTable called on a non-table entry")
        }
        // Take the child out so it is uniquely referenced while `body` mutates it.
        entries[index].value.kind = .boolean(false)
        defer { entries[index].value.kind = .table(child) }
        return try body(&child)
    }
}

/// Parses TOML text into a `TOMLTable`, reporting errors as `ProfileError`s for `file`.
struct TOMLParser: Sendable {
    private let file: String
    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var root = TOMLTable(line: 0, origin: .header)
    /// Path of the table the last `[header]` opened; key/value lines go there.
    private var currentTable: [String] = []

    static func parse(_ text: String, file: String) throws(ProfileError) -> TOMLTable {
        var parser = TOMLParser(file: file, bytes: Array(text.utf8))
        try parser.parseDocument()
        return parser.root
    }

    private init(file: String, bytes: [UInt8]) {
        self.file = file
        self.bytes = bytes
    }

    // MARK: Document structure

    private mutating func parseDocument() throws(ProfileError) {
        while true {
            skipSpaces()
            guard let byte = peek() else { return }
            switch byte {
            case UInt8(ascii: "#"):
                skipComment()
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                try consumeNewline()
            case UInt8(ascii: "["):
                try parseHeader()
                try expectEndOfLine(after: "the table header")
            default:
                let keyLine = line
                let path = try parseKey()
                let value = try parseAssignment(to: path)
                try Self.insert(value, at: path, keyLine: keyLine, below: currentTable, into: &root, file: file)
                try expectEndOfLine(after: "the value of '\(dotted(currentTable + path))'")
            }
        }
    }

    /// `[a.b]`: defines a table and makes it current.
    private mutating func parseHeader() throws(ProfileError) {
        let headerLine = line
        index += 1  // "["
        if peek() == UInt8(ascii: "[") {
            throw error("arrays of tables ([[...]]) are not supported in profiles; use a plain [table] or an array of strings")
        }
        skipSpaces()
        let path = try parseKey()
        skipSpaces()
        guard peek() == UInt8(ascii: "]") else {
            throw error("expected ']' to close the table header [\(dotted(path))", key: dotted(path))
        }
        index += 1
        try Self.defineTable(at: path, line: headerLine, in: &root, file: file)
        currentTable = path
    }

    /// After a header or a key/value pair only a comment may follow on the same line.
    private mutating func expectEndOfLine(after what: String) throws(ProfileError) {
        skipSpaces()
        if peek() == UInt8(ascii: "#") { skipComment() }
        guard let byte = peek() else { return }
        guard byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") else {
            throw error("unexpected \(describe(byte)) after \(what); write one key = value per line (a # starts a comment)")
        }
        try consumeNewline()
    }

    // MARK: Keys

    /// A possibly dotted key: `a`, `"quoted key"`, `limits.memory`, `a . 'b'`.
    private mutating func parseKey() throws(ProfileError) -> [String] {
        var path: [String] = []
        while true {
            skipSpaces()
            path.append(try parseSimpleKey(after: path))
            skipSpaces()
            guard peek() == UInt8(ascii: ".") else { return path }
            index += 1
        }
    }

    private mutating func parseSimpleKey(after path: [String]) throws(ProfileError) -> String {
        guard let byte = peek() else {
            throw error("expected a key, found the end of the file")
        }
        if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
            if peek(offset: 1) == byte && peek(offset: 2) == byte {
                throw error("multi-line strings cannot be keys")
            }
            return byte == UInt8(ascii: "\"") ? try parseBasicString() : try parseLiteralString()
        }
        let start = index
        while let b = peek(), isBareKeyByte(b) { index += 1 }
        guard index > start else {
            let context = path.isEmpty ? "" : " after '\(dotted(path)).'"
            throw error("expected a key\(context), found \(describe(byte)); keys are letters, digits, '_' and '-', or a \"quoted string\"")
        }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// `= value`, after a key.
    private mutating func parseAssignment(to path: [String]) throws(ProfileError) -> TOMLValue {
        skipSpaces()
        guard peek() == UInt8(ascii: "=") else {
            let found = peek().map(describe) ?? "the end of the file"
            throw error("expected '=' after key '\(dotted(path))', found \(found)", key: dotted(currentTable + path))
        }
        index += 1
        skipSpaces()
        return try parseValue(for: currentTable + path)
    }

    // MARK: Values

    private mutating func parseValue(for key: [String]) throws(ProfileError) -> TOMLValue {
        let valueLine = line
        guard let byte = peek(), byte != UInt8(ascii: "\n"), byte != UInt8(ascii: "\r"), byte != UInt8(ascii: "#") else {
            throw error("expected a value after '\(dotted(key)) ='", key: dotted(key))
        }
        let kind: TOMLValue.Kind
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            if peek(offset: 1) == byte && peek(offset: 2) == byte {
                throw error("multi-line strings are not supported; write one line, using \\n escapes in a \"basic string\" if needed", key: dotted(key))
            }
            kind = .string(byte == UInt8(ascii: "\"") ? try parseBasicString() : try parseLiteralString())
        case UInt8(ascii: "["):
            kind = .array(try parseArray(for: key))
        case UInt8(ascii: "{"):
            kind = .table(try parseInlineTable(for: key))
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"):
            kind = try parseNumber(for: key)
        default:
            let word = readWord()
            switch word {
            case "true": kind = .boolean(true)
            case "false": kind = .boolean(false)
            case "inf", "nan":
                throw error("inf and nan are not supported; write a finite number", key: dotted(key))
            case "":
                throw error("expected a value (a \"string\", a number, true/false, an [array] or an { inline = table }), found \(describe(byte))", key: dotted(key))
            default:
                throw error("expected a value, found '\(word)'; strings must be quoted: \"\(word)\"", key: dotted(key))
            }
        }
        return TOMLValue(kind: kind, line: valueLine)
    }

    /// `[a, b, ...]`: may span lines, hold comments and end with a comma.
    private mutating func parseArray(for key: [String]) throws(ProfileError) -> [TOMLValue] {
        let openLine = line
        index += 1  // "["
        var items: [TOMLValue] = []
        while true {
            try skipSpacesNewlinesAndComments()
            guard let byte = peek() else {
                throw error("unterminated array (opened on line \(openLine)); expected ']'", key: dotted(key))
            }
            if byte == UInt8(ascii: "]") {
                index += 1
                return items
            }
            items.append(try parseValue(for: key))
            try skipSpacesNewlinesAndComments()
            switch peek() {
            case UInt8(ascii: ","):
                index += 1
            case UInt8(ascii: "]"):
                index += 1
                return items
            case let other:
                let found = other.map(describe) ?? "the end of the file"
                throw error("expected ',' or ']' in the array opened on line \(openLine), found \(found)", key: dotted(key))
            }
        }
    }

    /// `{ a = 1, b.c = "x" }`: one line, no trailing comma (TOML 1.0 rules, so other tools agree).
    private mutating func parseInlineTable(for key: [String]) throws(ProfileError) -> TOMLTable {
        var table = TOMLTable(line: line, origin: .inline)
        index += 1  // "{"
        skipSpaces()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return table
        }
        while true {
            skipSpaces()
            if let b = peek(), b == UInt8(ascii: "\n") || b == UInt8(ascii: "\r") {
                throw error("inline tables must fit on one line; use a [\(dotted(key))] section for longer ones", key: dotted(key))
            }
            if peek() == UInt8(ascii: "}") {
                throw error("trailing comma in an inline table; remove the ',' before '}'", key: dotted(key))
            }
            let keyLine = line
            let path = try parseKey()
            skipSpaces()
            guard peek() == UInt8(ascii: "=") else {
                throw error("expected '=' after key '\(dotted(path))' in the inline table", key: dotted(key + path))
            }
            index += 1
            skipSpaces()
            let value = try parseValue(for: key + path)
            try Self.insert(value, at: path, keyLine: keyLine, below: [], into: &table, file: file, prefix: key)
            skipSpaces()
            switch peek() {
            case UInt8(ascii: ","):
                index += 1
            case UInt8(ascii: "}"):
                index += 1
                return table
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                throw error("inline tables must fit on one line; use a [\(dotted(key))] section for longer ones", key: dotted(key))
            case let other:
                let found = other.map(describe) ?? "the end of the file"
                throw error("expected ',' or '}' in the inline table, found \(found)", key: dotted(key))
            }
        }
    }

    /// `"..."` with escapes \" \\ \b \t \n \f \r \uXXXX \UXXXXXXXX.
    private mutating func parseBasicString() throws(ProfileError) -> String {
        let openLine = line
        index += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard let byte = peek(), byte != UInt8(ascii: "\n"), byte != UInt8(ascii: "\r") else {
                throw error("unterminated string (opened on line \(openLine)); expected a closing '\"' on the same line")
            }
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try parseEscape(into: &out)
            case 0x00...0x08, 0x0A...0x1F, 0x7F:
                throw error("control character \(describe(byte)) in a string; write it as an escape such as \\t or \\u001B")
            default:
                out.append(byte)
            }
        }
    }

    private mutating func parseEscape(into out: inout [UInt8]) throws(ProfileError) {
        guard let byte = peek() else { throw error("unterminated escape at the end of the file") }
        index += 1
        switch byte {
        case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let digits = byte == UInt8(ascii: "u") ? 4 : 8
            var scalarValue: UInt32 = 0
            for _ in 0..<digits {
                guard let d = peek(), let v = hexValue(d) else {
                    throw error("\\\(Character(Unicode.Scalar(byte))) must be followed by \(digits) hexadecimal digits")
                }
                scalarValue = scalarValue << 4 | v
                index += 1
            }
            guard let scalar = Unicode.Scalar(scalarValue) else {
                throw error("\\u escape names no Unicode character (surrogate or beyond U+10FFFF)")
            }
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            throw error("unknown escape \\\(describe(byte, quoted: false)) in a string; use \\\\ for a backslash, or a 'literal string' where backslashes are kept as written")
        }
    }

    /// `'...'`: no escapes, kept as written.
    private mutating func parseLiteralString() throws(ProfileError) -> String {
        let openLine = line
        index += 1
        let start = index
        while true {
            guard let byte = peek(), byte != UInt8(ascii: "\n"), byte != UInt8(ascii: "\r") else {
                throw error("unterminated literal string (opened on line \(openLine)); expected a closing \"'\" on the same line")
            }
            if byte == UInt8(ascii: "'") {
                let text = String(decoding: bytes[start..<index], as: UTF8.self)
                index += 1
                return text
            }
            if byte < 0x20 && byte != 0x09 || byte == 0x7F {
                throw error("control character \(describe(byte)) in a literal string")
            }
            index += 1
        }
    }

    /// Integers (`42`, `-1`, `1_000`) and floats (`1.5`, `2e3`, `-0.25`).
    private mutating func parseNumber(for key: [String]) throws(ProfileError) -> TOMLValue.Kind {
        let token = readWord(extraBytes: "+-.:")
        let k = dotted(key)
        if token.utf8.count >= 5, token.utf8.prefix(4).allSatisfy(isDigit),
           token.utf8.dropFirst(4).first == UInt8(ascii: "-") || token.contains(":") {
            throw error("dates and times are not supported in profiles", key: k)
        }
        let unsigned = token.hasPrefix("+") || token.hasPrefix("-") ? String(token.dropFirst()) : token
        if unsigned.hasPrefix("0x") || unsigned.hasPrefix("0o") || unsigned.hasPrefix("0b") {
            throw error("hexadecimal, octal and binary integers are not supported; write '\(token)' in decimal", key: k)
        }
        if unsigned == "inf" || unsigned == "nan" {
            throw error("inf and nan are not supported; write a finite number", key: k)
        }
        guard let shape = NumberShape(token) else {
            throw error("'\(token)' is not a number; write digits like 1024, 1_000_000 or 1.5 (no leading zeros; '_' only between digits)", key: k)
        }
        let plain = token.filter { $0 != "_" }
        if shape.isFloat {
            guard let value = Double(plain), value.isFinite else {
                throw error("'\(token)' is out of range for a float", key: k)
            }
            return .float(value)
        }
        guard let value = Int64(plain) else {
            throw error("'\(token)' is out of range for an integer (64-bit)", key: k)
        }
        return .integer(value)
    }

    // MARK: Building the tree

    /// Ensures the table `path` exists and marks it defined by a header.
    private static func defineTable(at path: [String], line: Int, in table: inout TOMLTable, file: String, depth: Int = 0) throws(ProfileError) {
        let name = path[depth]
        let fullName = path[...depth].joined(separator: ".")
        let isLast = depth == path.count - 1
        guard let index = table.index(of: name) else {
            var child = TOMLTable(line: line, origin: isLast ? .header : .implicit)
            if !isLast { try defineTable(at: path, line: line, in: &child, file: file, depth: depth + 1) }
            table.append(.init(key: name, line: line, value: TOMLValue(kind: .table(child), line: line)))
            return
        }
        let existing = table.entries[index]
        guard case .table(let child) = existing.value.kind else {
            throw ProfileError(file: file, line: line, key: fullName, message: "'\(fullName)' is already \(existing.value.typeDescription) (line \(existing.line)), it cannot also be a table")
        }
        if child.origin == .inline {
            throw ProfileError(file: file, line: line, key: fullName, message: "table '\(fullName)' was written inline on line \(existing.line) and cannot be extended; move its keys into one [\(fullName)] section")
        }
        if isLast {
            guard child.origin == .implicit else {
                throw ProfileError(file: file, line: line, key: fullName, message: "table [\(fullName)] is defined twice (first on line \(existing.line)); merge the two sections")
            }
        }
        try table.modifyTable(at: index) { (child) throws(ProfileError) in
            if isLast {
                child.origin = .header
                child.line = line
            } else {
                try defineTable(at: path, line: line, in: &child, file: file, depth: depth + 1)
            }
        }
    }

    /// Inserts `value` at `path` (a possibly dotted key) inside the table at `tablePath`.
    /// `prefix` is only for messages: the key an inline table is the value of.
    private static func insert(
        _ value: TOMLValue, at path: [String], keyLine: Int, below tablePath: [String],
        into table: inout TOMLTable, file: String, prefix: [String] = []
    ) throws(ProfileError) {
        if let first = tablePath.first {
            // Header tables were created by defineTable; just walk down.
            let index = table.index(of: first)!
            try table.modifyTable(at: index) { (child) throws(ProfileError) in
                try insert(value, at: path, keyLine: keyLine, below: Array(tablePath.dropFirst()), into: &child, file: file, prefix: prefix + [first])
            }
            return
        }
        let name = path[0]
        let fullKey = (prefix + [name]).joined(separator: ".")
        let existingIndex = table.index(of: name)
        if path.count == 1 {
            if let existingIndex {
                let first = table.entries[existingIndex].line
                throw ProfileError(file: file, line: keyLine, key: fullKey, message: "duplicate key '\(fullKey)' (first set on line \(first)); keep one")
            }
            table.append(.init(key: name, line: keyLine, value: value))
            return
        }
        // A dotted key: the intermediate table is created, or extended if dotted keys made it.
        let rest = Array(path.dropFirst())
        guard let existingIndex else {
            var child = TOMLTable(line: keyLine, origin: .dotted)
            try insert(value, at: rest, keyLine: keyLine, below: [], into: &child, file: file, prefix: prefix + [name])
            table.append(.init(key: name, line: keyLine, value: TOMLValue(kind: .table(child), line: keyLine)))
            return
        }
        let existing = table.entries[existingIndex]
        guard case .table(let child) = existing.value.kind, child.origin == .dotted else {
            let what = if case .table = existing.value.kind { "a table defined on line \(existing.line)" } else { "\(existing.value.typeDescription) (line \(existing.line))" }
            throw ProfileError(file: file, line: keyLine, key: fullKey, message: "'\(fullKey)' is already \(what); a dotted key cannot add to it")
        }
        try table.modifyTable(at: existingIndex) { (child) throws(ProfileError) in
            try insert(value, at: rest, keyLine: keyLine, below: [], into: &child, file: file, prefix: prefix + [name])
        }
    }

    // MARK: Lexing helpers

    private func peek(offset: Int = 0) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private mutating func skipSpaces() {
        while let b = peek(), b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") { index += 1 }
    }

    private mutating func skipComment() {
        while let b = peek(), b != UInt8(ascii: "\n"), b != UInt8(ascii: "\r") { index += 1 }
    }

    private mutating func consumeNewline() throws(ProfileError) {
        if peek() == UInt8(ascii: "\r") {
            guard peek(offset: 1) == UInt8(ascii: "\n") else {
                throw error("a carriage return must be followed by a newline")
            }
            index += 1
        }
        index += 1
        line += 1
    }

    private mutating func skipSpacesNewlinesAndComments() throws(ProfileError) {
        while let b = peek() {
            switch b {
            case UInt8(ascii: " "), UInt8(ascii: "\t"): index += 1
            case UInt8(ascii: "#"): skipComment()
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"): try consumeNewline()
            default: return
            }
        }
    }

    /// Reads letters, digits, '_' (and `extraBytes`): a bare word or number token.
    private mutating func readWord(extraBytes: String = "") -> String {
        let extra = Array(extraBytes.utf8)
        let start = index
        while let b = peek(), isBareKeyByte(b) || extra.contains(b) { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    private func error(_ message: String, key: String = "") -> ProfileError {
        ProfileError(file: file, line: line, key: key, message: message)
    }

    private func dotted(_ path: [String]) -> String { path.joined(separator: ".") }

    private func describe(_ byte: UInt8) -> String { describe(byte, quoted: true) }

    private func describe(_ byte: UInt8, quoted: Bool) -> String {
        if byte >= 0x21 && byte < 0x7F {
            let c = String(Character(Unicode.Scalar(byte)))
            return quoted ? "'\(c)'" : c
        }
        var hex = String(byte, radix: 16, uppercase: true)
        if hex.count < 2 { hex = "0" + hex }
        return byte == 0x20 ? "a space" : "byte 0x\(hex)"
    }
}

private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

private func isBareKeyByte(_ b: UInt8) -> Bool {
    isDigit(b) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
        || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
}

private func hexValue(_ b: UInt8) -> UInt32? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(b - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(b - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(b - UInt8(ascii: "A") + 10)
    default: nil
    }
}

/// Checks a number token against TOML's decimal grammar:
/// `[+-]? (0 | [1-9] digits) (. digits)? ([eE] [+-]? digits)?`, where `digits`
/// may hold single '_' between digits.
private struct NumberShape {
    let isFloat: Bool

    init?(_ token: String) {
        var bytes = Array(token.utf8)[...]
        if let first = bytes.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        guard let intPart = Self.digits(&bytes) else { return nil }
        // No leading zeros: "0" alone is fine, "007" is not.
        if intPart.count > 1 && intPart.first == UInt8(ascii: "0") { return nil }
        var isFloat = false
        if bytes.first == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            guard Self.digits(&bytes) != nil else { return nil }
            isFloat = true
        }
        if let e = bytes.first, e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if let s = bytes.first, s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
            guard Self.digits(&bytes) != nil else { return nil }
            isFloat = true
        }
        guard bytes.isEmpty else { return nil }
        self.isFloat = isFloat
    }

    /// Consumes `digit ('_'? digit)*`; returns the digits without underscores, or nil if malformed.
    private static func digits(_ bytes: inout ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        var lastWasDigit = false
        while let b = bytes.first {
            if isDigit(b) {
                out.append(b)
                lastWasDigit = true
            } else if b == UInt8(ascii: "_") {
                guard lastWasDigit, let next = bytes.dropFirst().first, isDigit(next) else { return nil }
                lastWasDigit = false
            } else {
                break
            }
            bytes = bytes.dropFirst()
        }
        return out.isEmpty ? nil : out
    }
}
