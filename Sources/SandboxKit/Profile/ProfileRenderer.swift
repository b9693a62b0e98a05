/// Writes a resolved `Profile` back out, as TOML (reads back to an equal
/// `Profile`) or JSON (for scripts). Both come from one ordered list of
/// sections and keys, so they cannot disagree about what a profile holds.
extension Profile {
    /// Every key with its resolved value, as a profile file; `extends` is already applied.
    public func renderTOML() -> String {
        var out = "# Profile '\(name)' from \(source), resolved: extends applied, defaults filled in.\n"
        out += "description = \(TOMLText.string(description))\n"
        for (section, keys) in renderedSections {
            out += "\n[\(section)]\n"
            var subtables: [(String, [(String, String)])] = []
            for (key, value) in keys {
                if case .table(let entries) = value {
                    subtables.append((key, entries))
                    continue
                }
                out += "\(TOMLText.key(key)) = \(TOMLText.value(value, indent: ""))\n"
            }
            // Sub-tables come last: after a header, plain keys would belong to the sub-table.
            for (key, entries) in subtables {
                out += "\n[\(section).\(TOMLText.key(key))]\n"
                for (name, text) in entries {
                    out += "\(TOMLText.key(name)) = \(TOMLText.string(text))\n"
                }
            }
        }
        return out
    }

    /// The resolved profile as a JSON object; sizes are in bytes and durations in seconds.
    public func renderJSON() -> String {
        var members: [(String, JSON)] = [("name", .string(name)), ("description", .string(description)), ("source", .string(source))]
        for (section, keys) in renderedSections {
            members.append((section, .object(keys.map { ($0.0, $0.1.json) })))
        }
        return JSON.object(members).rendered(pretty: true) + "\n"
    }

    /// A value as both renderers need it; `size` is a byte count ("4GiB" in TOML, a number in JSON).
    enum RenderedValue {
        case string(String)
        case integer(UInt64)
        case number(Double)
        case boolean(Bool)
        case size(UInt64)
        case strings([String])
        case table([(String, String)])
    }

    /// Sections and keys in documentation order (the order of docs/PROFILES.md and worker.toml).
    var renderedSections: [(String, [(String, RenderedValue)])] {
        [
            ("identity", [
                ("uid", .integer(UInt64(identity.uid))),
                ("gid", .integer(UInt64(identity.gid))),
                ("hostname", .string(identity.hostname)),
            ]),
            ("filesystem", [
                ("read_only", .strings(filesystem.readOnly)),
                ("read_write", .strings(filesystem.readWrite)),
                ("hide", .strings(filesystem.hide)),
                ("workdir", .string(filesystem.workdir.rawValue)),
                ("tmp_size", .size(filesystem.tmpSize)),
                ("home", .string(filesystem.home)),
                ("home_size", .size(filesystem.homeSize)),
                ("home_writable", .boolean(filesystem.homeWritable)),
                ("blocked", .strings(filesystem.blocked)),
                ("protected", .strings(filesystem.protected)),
            ]),
            ("network", [("mode", .string(network.mode.rawValue))]),
            ("capabilities", [("keep", .strings(capabilities.keep))]),
            ("seccomp", [("deny", .strings(seccomp.deny)), ("allow", .strings(seccomp.allow))]),
            ("limits", [
                ("memory", .size(limits.memory)),
                ("pids", .integer(limits.pids)),
                ("cpus", .number(limits.cpus)),
                ("open_files", .integer(limits.openFiles)),
                ("file_size", .size(limits.fileSize)),
                ("timeout", .number(limits.timeout)),
            ]),
            ("environment", [
                ("keep", .strings(environment.keep)),
                ("set", .table(environment.set.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })),
            ]),
            ("gate", [
                ("max_lines", .integer(gate.maxLines)),
                ("max_bytes", .size(gate.maxBytes)),
                ("forbidden", .strings(gate.forbidden)),
                ("tests", .strings(gate.tests)),
            ]),
        ]
    }
}

extension ProfileError {
    /// The exit code for a profile that cannot be used (sandboxd's own failure, 125).
    /// Spelled here because `ExitCode` is ambiguous in files that also import ArgumentParser.
    public var exitCode: Int32 { ExitCode.sandboxFailed }
}

/// Numbers written so they read back exactly: whole numbers without ".0", others in Swift's
/// shortest round-tripping form ("1.5", "1e-05"), which both TOML and JSON accept.
private func numberText(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 9_007_199_254_740_992 { return String(Int64(value)) }
    return String(value)
}

private enum TOMLText {
    static func value(_ value: Profile.RenderedValue, indent: String) -> String {
        switch value {
        case .string(let text): return string(text)
        case .integer(let n): return String(n)
        case .number(let n): return numberText(n)
        case .boolean(let flag): return flag ? "true" : "false"
        case .size(let bytes):
            let text = ByteSize.format(bytes)
            return text.allSatisfy(\.isNumber) ? text : string(text)
        case .strings(let items):
            let quoted = items.map(string)
            let oneLine = "[" + quoted.joined(separator: ", ") + "]"
            guard oneLine.count > 72 else { return oneLine }
            // Filled to 88 columns, one indent deep, as the hand-written profiles are.
            var lines: [String] = []
            for item in quoted {
                if let last = lines.last, last.count + item.count + 2 <= 88 {
                    lines[lines.count - 1] += " \(item),"
                } else {
                    lines.append("    \(item),")
                }
            }
            return "[\n" + lines.map { $0 + "\n" }.joined() + "]"
        case .table(let entries):
            return "{ " + entries.map { "\(key($0.0)) = \(string($0.1))" }.joined(separator: ", ") + " }"
        }
    }

    /// A key bare when TOML allows it, quoted otherwise.
    static func key(_ key: String) -> String {
        let bare = !key.isEmpty && key.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2D
        }
        return bare ? key : string(key)
    }

    /// A basic string with the escapes the parser reads back.
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += unicodeEscape(scalar)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension Profile.RenderedValue {
    /// Sizes are byte counts and durations seconds in JSON; whole numbers without ".0".
    var json: JSON {
        switch self {
        case .string(let text): return .string(text)
        case .integer(let n), .size(let n): return .uint(n)
        case .number(let n):
            return n == n.rounded() && abs(n) < 9_007_199_254_740_992 ? .int(Int64(n)) : .double(n)
        case .boolean(let flag): return .bool(flag)
        case .strings(let items): return .strings(items)
        case .table(let entries): return .object(entries.map { ($0.0, .string($0.1)) })
        }
    }
}

private func unicodeEscape(_ scalar: Unicode.Scalar) -> String {
    let hex = String(scalar.value, radix: 16, uppercase: true)
    return "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
}
