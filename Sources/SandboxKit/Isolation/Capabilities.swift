import CCap
import Glibc

/// Capability names to the bitmask the launcher keeps, resolved by libcap
/// (`cap_from_name`) so names follow the installed kernel headers.
public enum Capabilities {
    /// Bitmask of `names` ("CHOWN" or "CAP_CHOWN"). Unknown names throw: a
    /// profile that asks for a capability this host cannot name must not run.
    public static func mask(_ names: [String]) throws(SandboxError) -> UInt64 {
        var mask: UInt64 = 0
        for raw in names {
            let name = raw.lowercased().hasPrefix("cap_") ? raw.lowercased() : "cap_" + raw.lowercased()
            var value: cap_value_t = 0
            guard cap_from_name(name, &value) == 0, value >= 0, value < 64 else {
                throw SandboxError("capabilities: unknown capability '\(raw)'; see capabilities(7) for names")
            }
            mask |= 1 << UInt64(value)
        }
        return mask
    }

    /// Names of the capabilities set in `mask`, upper-case without `CAP_`, for reports.
    public static func names(_ mask: UInt64) -> [String] {
        (0..<64).compactMap { bit -> String? in
            guard mask & (1 << UInt64(bit)) != 0, let c = cap_to_name(cap_value_t(bit)) else { return nil }
            defer { cap_free(c) }
            let s = String(cString: c)
            return (s.hasPrefix("cap_") ? String(s.dropFirst(4)) : s).uppercased()
        }
    }
}
