import ArgumentParser
import Glibc
import SandboxExt

/// What export and import share: sizes and rates.
enum ArchiveCLI {
    /// "64GiB", "500M", "1048576" -> bytes.
    static func size(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: " ")
        let digits = t.prefix(while: { $0.isNumber })
        guard let n = UInt64(digits) else { return nil }
        let unit = t.dropFirst(digits.count).lowercased()
        let shift: UInt64
        switch unit {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        case "t", "tb", "tib": shift = 40
        default: return nil
        }
        let (v, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : v
    }

    static func megabytesPerSecond(_ bytes: UInt64, _ seconds: Double) -> String {
        guard seconds > 0 else { return "-" }
        let v = Double(bytes) / seconds / 1_048_576
        return String(Int(v.rounded()))
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}
