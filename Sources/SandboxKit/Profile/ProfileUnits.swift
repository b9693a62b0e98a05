/// Human-friendly units in profiles: byte sizes ("512MiB") and durations ("5m").
///
/// Both parse to plain numbers and format back to the same number, so a
/// rendered profile reads back to an equal `Profile`.
enum ByteSize {
    /// Binary multipliers. "K", "M", "G", "T" are binary as in systemd and docker;
    /// "KB"/"MB"/"GB"/"TB" are refused because half the world reads them as decimal.
    private static let units: [(suffixes: [String], shift: UInt64)] = [
        (["", "b"], 0), (["k", "kib"], 10), (["m", "mib"], 20), (["g", "gib"], 30), (["t", "tib"], 40),
    ]

    /// Parses "4GiB", "512M", "1.5G", "100", "64 KiB" to bytes; nil with a reason on failure.
    static func parse(_ text: String) -> Result<UInt64, ValueProblem> {
        let trimmed = text.trimmingSpaces()
        let numberEnd = trimmed.firstIndex { !($0.isASCII && ($0.isNumber || $0 == "." || $0 == "_")) } ?? trimmed.endIndex
        let number = trimmed[..<numberEnd].filter { $0 != "_" }
        let unit = trimmed[numberEnd...].trimmingSpaces().lowercased()
        guard !number.isEmpty, number.first != ".", number.last != "." else {
            return .failure(ValueProblem("'\(text)' is not a size; write a number of bytes or a number with a unit, like \"512MiB\", \"4GiB\" or \"64KiB\""))
        }
        if ["kb", "mb", "gb", "tb"].contains(unit) {
            let binary = unit.prefix(1).uppercased() + "iB"
            return .failure(ValueProblem("'\(text)' is ambiguous (decimal or binary?); write \(number)\(binary)"))
        }
        guard let shift = units.first(where: { $0.suffixes.contains(unit) })?.shift else {
            return .failure(ValueProblem("unknown size unit '\(trimmed[numberEnd...].trimmingSpaces())' in '\(text)'; use B, KiB, MiB, GiB or TiB (K, M, G, T mean the same)"))
        }
        if let whole = UInt64(number) {
            let (bytes, overflow) = whole.multipliedReportingOverflow(by: 1 << shift)
            return overflow ? .failure(ValueProblem("'\(text)' is too large")) : .success(bytes)
        }
        // A fraction ("1.5GiB"): only meaningful with a unit; rounded down to whole bytes.
        guard shift > 0, let value = Double(number) else {
            return .failure(ValueProblem("'\(text)' is not a whole number of bytes; use a unit (\"1.5GiB\") or an integer"))
        }
        let bytes = value * Double(UInt64(1) << shift)
        guard bytes < 18_446_744_073_709_551_616.0 else { return .failure(ValueProblem("'\(text)' is too large")) }
        return .success(UInt64(bytes))
    }

    /// The shortest exact spelling: "4GiB", "1536MiB", "1000" (bytes when no unit divides evenly).
    static func format(_ bytes: UInt64) -> String {
        guard bytes > 0 else { return "0" }
        for (suffixes, shift) in units.reversed() where shift > 0 {
            if bytes % (1 << shift) == 0 {
                let name = suffixes[1]
                return "\(bytes >> shift)\(name.prefix(1).uppercased())\(name.dropFirst(1).dropLast())B"
            }
        }
        return String(bytes)
    }
}

enum DurationText {
    /// Seconds per unit as a fraction, so "250ms" is exactly 0.25 (0.001 is not exact in binary).
    private static let units: [(suffix: String, seconds: Double, per: Double)] = [
        ("ms", 1, 1000), ("s", 1, 1), ("m", 60, 1), ("h", 3600, 1),
    ]

    /// Parses "30s", "5m", "1.5h", "250ms", "90" to seconds.
    static func parse(_ text: String) -> Result<Double, ValueProblem> {
        let trimmed = text.trimmingSpaces()
        let numberEnd = trimmed.firstIndex { !($0.isASCII && ($0.isNumber || $0 == ".")) } ?? trimmed.endIndex
        let number = String(trimmed[..<numberEnd])
        let unit = trimmed[numberEnd...].trimmingSpaces().lowercased()
        guard let value = Double(number), number.first != ".", number.last != "." else {
            return .failure(ValueProblem("'\(text)' is not a duration; write seconds as a number (300) or a string like \"30s\", \"5m\", \"1h\""))
        }
        guard let scale = unit.isEmpty ? (1, 1) : units.first(where: { $0.suffix == unit }).map({ ($0.seconds, $0.per) }) else {
            return .failure(ValueProblem("unknown duration unit '\(unit)' in '\(text)'; use ms, s, m or h"))
        }
        return .success(value * scale.0 / scale.1)
    }
}

/// Why a value (a size, a duration, a list entry) is not acceptable; the caller adds file, line and key.
struct ValueProblem: Error, Sendable {
    var message: String
    init(_ message: String) { self.message = message }
}

extension Substring {
    /// Without blanks at either end. Index arithmetic on the UTF-8 view: the
    /// obvious drop/reversed chain instantiates generic metadata at run time
    /// and cost every launch ~0.15 ms.
    fileprivate func trimmingSpaces() -> String {
        let bytes = utf8
        var start = bytes.startIndex, end = bytes.endIndex
        func blank(_ b: UInt8) -> Bool { b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") }
        while start < end, blank(bytes[start]) { start = bytes.index(after: start) }
        while start < end, blank(bytes[bytes.index(before: end)]) { end = bytes.index(before: end) }
        return String(self[start..<end])
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String { self[...].trimmingSpaces() }
}
