/// JSON shapes of what sandboxd prints: the plan (`exec --dry-run`) and the result (`--json-report`).
extension LaunchPlan {
    public var json: JSON {
        .object([
            ("profile", .string(profile)),
            ("namespaces", .strings(namespaces)),
            ("ids", .object([
                ("uid", .int(Int64(ids.uid))), ("gid", .int(Int64(ids.gid))),
                ("uid_map", .string(ids.uidMap)), ("gid_map", .string(ids.gidMap)),
                ("idmap_uid_map", ids.idmapUIDMap.map(JSON.string) ?? .null),
                ("idmap_gid_map", ids.idmapGIDMap.map(JSON.string) ?? .null),
            ])),
            ("hostname", .string(hostname)),
            ("mounts", .array(mounts.map { m in
                var f: [(String, JSON)] = [("kind", .string(m.kind.rawValue))]
                if let s = m.source { f.append(("source", .string(s))) }
                f.append(("target", .string(m.target)))
                if m.readOnly { f.append(("read_only", .bool(true))) }
                if m.optional { f.append(("optional", .bool(true))) }
                if m.idmap { f.append(("idmap", .bool(true))) }
                if let d = m.data { f.append(("data", .string(d))) }
                return .object(f)
            })),
            ("cwd", .string(cwd)),
            ("argv", .strings(argv)),
            ("environment", .strings(environment)),
            ("capabilities", .strings(capabilities)),
            ("no_new_privs", .bool(true)),
            ("seccomp", .object([
                ("programs", .int(Int64(seccomp.count))),
                ("instructions", .array(seccomp.map { .int(Int64($0.instructionCount)) })),
            ])),
            ("limits", .object([
                ("memory_bytes", .uint(limits.memory)), ("pids", .uint(limits.pids)), ("cpus", .double(limits.cpus)),
                ("open_files", .uint(limits.openFiles)), ("file_size_bytes", .uint(limits.fileSize)),
            ])),
            ("timeout_seconds", .double(timeout)),
            ("network", .string(loopback ? "loopback" : "none")),
            ("tty", .bool(tty)),
            ("masked_paths", .int(Int64(maskedCount))),
            ("walked_entries", .int(Int64(walkedEntries))),
            ("walked_directories", .object([
                ("read", .int(Int64(directoriesRead))), ("reused", .int(Int64(directoriesReused))),
            ])),
        ])
    }
}

extension SandboxResult {
    public var json: JSON {
        .object([
            ("exit_code", .int(Int64(exitCode))),
            ("signal", signal.map { .int(Int64($0)) } ?? .null),
            ("timed_out", .bool(timedOut)),
            ("wall_seconds", .double(wallSeconds)),
            ("cpu_user_seconds", .double(userCPUSeconds)),
            ("cpu_system_seconds", .double(systemCPUSeconds)),
            ("peak_memory_bytes", peakMemoryBytes.map(JSON.uint) ?? .null),
            ("oom_killed", .bool(oomKilled)),
            ("profile", .string(profile)),
            ("warnings", .strings(warnings)),
        ])
    }
}

extension LaunchPlan {
    /// The plan for people: what `exec --dry-run` prints without --json-report.
    public var summary: String {
        var s = "profile     \(profile)\n"
        s += "command     \(argv.joined(separator: " "))\n"
        s += "cwd         \(cwd)\n"
        s += "namespaces  \(namespaces.joined(separator: " "))\n"
        s += "ids         uid \(ids.uid) gid \(ids.gid); uid_map \(ids.uidMap.split(separator: "\n").joined(separator: ", "))\n"
        s += "network     \(loopback ? "loopback only" : "none")\n"
        s += "caps        \(capabilities.isEmpty ? "(none)" : capabilities.joined(separator: " ")); no_new_privs\n"
        s += "seccomp     \(seccomp.count) program\(seccomp.count == 1 ? "" : "s"), \(seccomp.map(\.instructionCount).reduce(0, +)) instructions\n"
        s += "limits      memory \(limits.memory) pids \(limits.pids) cpus \(limits.cpus) nofile \(limits.openFiles) fsize \(limits.fileSize) timeout \(timeout)\n"
        s += "mounts\n"
        for m in mounts {
            var flags: [String] = []
            if m.readOnly { flags.append("ro") }
            if m.idmap { flags.append("idmap") }
            if m.optional { flags.append("optional") }
            let src = m.source.map { " <- \($0)" } ?? ""
            s += "  \(m.kind.rawValue.padding(9)) \(m.target)\(src)\(flags.isEmpty ? "" : " [\(flags.joined(separator: ","))]")\n"
        }
        s += "environment\n"
        for e in environment { s += "  \(e)\n" }
        return s
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
