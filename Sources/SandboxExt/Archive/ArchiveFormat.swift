import Glibc

/// The export archive: a pax tar stream compressed with zstd, followed by a
/// zstd *skippable frame* holding the SHA-256 of every byte before it (so
/// `tar --zstd -xf FILE` still reads it: decoders skip such frames).
///
/// The first tar entry is `sandboxd-export.json`, the index: format,
/// version, the sandbox's name, and every following entry in order with its
/// type, size, mode and link target, plus the total of the file sizes.
/// Import checks the index before writing anything, then checks each entry
/// against it while extracting into a hidden directory.
///
/// ```
/// sandboxd-export.json   the index
/// manifest.json          the manifest (workdir recorded as the sandbox's own)
/// audit.jsonl            the audit log
/// plan.md                the plan, if any
/// root/upper/...         root changes (overlay upper layers, whiteouts included)
/// home/...  workdir/...  results/...
/// gitdir/...             a worker's private git directory (worker sandboxes only)
/// worktree.meta          the worker's worktree metadata: base, last passed commit
/// checkpoints/N/checkpoint.json, checkpoints/N/{root,home,workdir,gitdir}/...
/// ```
public enum ExportFormat {
    public static let format = "sandboxd.export"
    /// 2: worker git state (`gitdir`, `worktree.meta`) and checkpoints. Version 1 archives still import.
    public static let version: Int64 = 2
    public static let indexName = "sandboxd-export.json"
    /// The index may not be larger than this.
    public static let maximumIndexBytes = 256 << 20
    public static let maximumEntries = 10_000_000
    public static let maximumPath = 4096
    /// Default cap on the total size of the files an import may write.
    public static let defaultMaximumBytes: UInt64 = 64 << 30

    /// Top-level names and areas an archive may hold.
    public static let singleFiles: Set<String> = ["manifest.json", "audit.jsonl", "plan.md", "worktree.meta"]
    public static let areas = ["root/upper", "home", "workdir", "results", "gitdir"]
    /// The areas of one checkpoint, under `checkpoints/N/` (see `SandboxSession.checkpointAreas`).
    public static let checkpointAreas = ["root", "home", "workdir", "gitdir"]

    // MARK: Digest trailer

    /// A zstd skippable frame: magic 0x184D2A5E (little endian), payload
    /// length 56, then "SBXD-DIGEST-v1" padded to 16 bytes, the 32-byte
    /// SHA-256 of everything before the frame, and that length (u64 LE).
    public static let trailerSize = 64
    static let trailerMagic: [UInt8] = [0x5E, 0x2A, 0x4D, 0x18]
    static let trailerTag: [UInt8] = Array("SBXD-DIGEST-v1".utf8) + [0, 0]

    public static func trailer(digest: [UInt8], length: UInt64) -> [UInt8] {
        var out = trailerMagic
        out += [56, 0, 0, 0]
        out += trailerTag
        out += digest
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: length >> (UInt64(i) * 8))) }
        return out
    }

    /// (digest, length) from the last 64 bytes of a file, or nil if they are not a sandboxd trailer.
    public static func parseTrailer(_ bytes: [UInt8]) -> (digest: [UInt8], length: UInt64)? {
        guard bytes.count == trailerSize, Array(bytes[0..<4]) == trailerMagic, Array(bytes[4..<8]) == [56, 0, 0, 0],
              Array(bytes[8..<24]) == trailerTag else { return nil }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[56 + i]) << (UInt64(i) * 8) }
        return (Array(bytes[24..<56]), length)
    }

    // MARK: Index

    public enum Kind: String, Sendable {
        case file = "f", directory = "d", symlink = "l", hardlink = "h", whiteout = "c", fifo = "p"
    }

    public struct Entry: Sendable, Equatable {
        public var path: String
        public var kind: Kind
        public var size: UInt64
        public var mode: UInt32
        /// Symlink text, or the archive path a hard link points to.
        public var link: String?

        public init(path: String, kind: Kind, size: UInt64, mode: UInt32, link: String? = nil) {
            self.path = path
            self.kind = kind
            self.size = size
            self.mode = mode
            self.link = link
        }

        var json: JSON {
            var a: [JSON] = [.string(path), .string(kind.rawValue), .int(Int64(clamping: size)), .int(Int64(mode))]
            if let link { a.append(.string(link)) }
            return .array(a)
        }
    }

    public struct Index: Sendable {
        public var sandbox: String
        public var created: String
        public var totalBytes: UInt64
        /// What import writes: `totalBytes` plus a full copy for every `isCopyLink` entry
        /// (not in the archive's JSON: derived, and what the caps apply to).
        public var writtenBytes: UInt64 = 0
        public var entries: [Entry]

        public var json: JSON {
            .object([
                ("format", .string(ExportFormat.format)), ("version", .int(ExportFormat.version)),
                ("sandbox", .string(sandbox)), ("created", .string(created)),
                ("total_bytes", .int(Int64(clamping: totalBytes))), ("entry_count", .int(Int64(entries.count))),
                ("entries", .array(entries.map(\.json))),
            ])
        }
    }

    /// Parses and checks an index: every path, type, mode and link, the
    /// declared total against the sum and against `maximumBytes`. Whatever
    /// it accepts can be extracted without leaving the staging directory.
    public static func parseIndex(_ bytes: [UInt8], maximumBytes: UInt64) throws(SandboxError) -> Index {
        func hostile(_ why: String) -> SandboxError { SandboxError("refusing the archive: \(why)") }
        let root: JSON
        do { root = try JSONParser.parse(bytes) } catch { throw hostile("its index is not valid JSON (\(error))") }
        guard root["format"]?.stringValue == format else { throw hostile("not a sandboxd export (no \(format) index)") }
        guard let v = root["version"]?.intValue, v >= 1 else { throw hostile("the index has no version") }
        guard v <= version else { throw SandboxError("the archive's format version \(v) is newer than this sandboxd reads (\(version)); upgrade sandboxd") }
        guard let sandbox = root["sandbox"]?.stringValue, let total = root["total_bytes"]?.intValue, total >= 0,
              let raw = root["entries"]?.arrayValue else { throw hostile("the index lacks sandbox, total_bytes or entries") }
        do { try SandboxStore.validateName(sandbox) } catch { throw hostile("the sandbox name in the index is invalid: \(error.message)") }
        guard raw.count <= maximumEntries else { throw hostile("\(raw.count) entries (more than \(maximumEntries))") }
        guard UInt64(total) <= maximumBytes else {
            throw hostile("it declares \(total) bytes of files, more than the \(maximumBytes)-byte cap (--max-size) allows")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(raw.count)
        var seen: [String: Kind] = [:]
        var sum: UInt64 = 0
        var written: UInt64 = 0
        var sizes: [String: UInt64] = [:]
        for item in raw {
            guard let a = item.arrayValue, a.count >= 4, let path = a[0].stringValue,
                  let kind = a[1].stringValue.flatMap(Kind.init(rawValue:)), let size = a[2].intValue, size >= 0,
                  let mode = a[3].intValue, mode >= 0, mode <= 0o7777 else {
                throw hostile("a malformed index entry: \(item.rendered(pretty: false).prefix(200))")
            }
            let e = Entry(path: path, kind: kind, size: UInt64(size), mode: UInt32(mode), link: a.count > 4 ? a[4].stringValue : nil)
            try check(e, seen: seen)
            seen[path] = kind
            let (s, overflow) = sum.addingReportingOverflow(e.size)
            guard !overflow else { throw hostile("sizes overflow") }
            sum = s
            if e.kind == .file { sizes[path] = e.size }
            let copied = isCopyLink(e) ? sizes[e.link ?? ""] ?? 0 : e.size
            let (w, wOverflow) = written.addingReportingOverflow(copied)
            guard !wOverflow else { throw hostile("sizes overflow") }
            written = w
            guard written <= maximumBytes else { throw hostile("its files add up to more than the \(maximumBytes)-byte cap (--max-size)") }
            entries.append(e)
        }
        guard sum == UInt64(total) else { throw hostile("the entries add up to \(sum) bytes, not the \(total) declared") }
        guard seen["manifest.json"] == .file else { throw hostile("no manifest.json") }
        return Index(sandbox: sandbox, created: root["created"]?.stringValue ?? "", totalBytes: sum, writtenBytes: written, entries: entries)
    }

    /// The checks on one entry, given the entries before it.
    static func check(_ e: Entry, seen: [String: Kind]) throws(SandboxError) {
        func hostile(_ why: String) -> SandboxError { SandboxError("refusing the archive: \(e.path.prefix(300)): \(why)") }
        let p = e.path
        guard !p.isEmpty, p.utf8.count <= maximumPath, !p.utf8.contains(0) else { throw hostile("empty, overlong or NUL in the path") }
        guard !p.hasPrefix("/") else { throw hostile("absolute path") }
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.contains(where: { $0 == ".." }) else { throw hostile("'..' in the path") }
        guard !parts.contains(where: { $0.isEmpty || $0 == "." }) else { throw hostile("empty or '.' path component") }
        guard seen[p] == nil else { throw hostile("appears twice") }
        guard let area = areaOf(p) else {
            throw hostile("outside what an export holds (\(singleFiles.sorted().joined(separator: ", ")), \(areas.joined(separator: ", ")), checkpoints/N/...)")
        }
        if singleFiles.contains(p) || isCheckpointFile(p) {
            guard e.kind == .file else { throw hostile("must be a regular file") }
        } else if p == area || isCheckpointContainer(p) {
            guard e.kind == .directory else { throw hostile("must be a directory") }
        }
        // The parent must have been a directory entry: nothing is written through a symlink.
        if let slash = p.lastIndex(of: "/"), case let parent = String(p[..<slash]), parent != "root" {
            guard let pk = seen[parent] else { throw hostile("its directory \(parent) is not in the archive before it") }
            guard pk == .directory else { throw hostile("its parent \(parent) is a \(pk == .symlink ? "symlink" : "non-directory"): an entry through a link") }
        }
        switch e.kind {
        case .file, .fifo:
            guard e.mode & 0o6000 == 0 else { throw hostile("setuid or setgid file (mode \(String(e.mode, radix: 8)))") }
        case .directory:
            guard e.size == 0 else { throw hostile("a directory with a size") }
        case .symlink:
            guard e.size == 0, let target = e.link, !target.isEmpty, target.utf8.count <= maximumPath, !target.utf8.contains(0) else {
                throw hostile("a symlink without a valid target")
            }
            try checkSymlink(path: p, area: area, target: target, hostile: hostile)
        case .hardlink:
            guard e.size == 0, let target = e.link else { throw hostile("a hard link without a target") }
            guard seen[target] == .file else { throw hostile("a hard link to \(target.prefix(300)), which is not a regular file earlier in the archive") }
            guard e.mode & 0o6000 == 0 else { throw hostile("setuid or setgid file (mode \(String(e.mode, radix: 8)))") }
        case .whiteout:
            guard isRootArea(area), e.size == 0 else {
                throw hostile("a device node (only overlayfs whiteouts, character device 0:0 in root/upper, are carried)")
            }
        }
    }

    /// Relative targets are resolved from the link's directory and must stay
    /// within its area: under `root/upper/<layer>` the area is the
    /// sandbox's root (the link is seen at /<layer>/...); elsewhere it is
    /// home, workdir or results itself (the same for a checkpoint's copies of
    /// them). Absolute targets are resolved by the
    /// sandbox in its own root when it follows them, and sandboxd never
    /// follows links in its state, so they are kept.
    static func checkSymlink(path: String, area: String, target: String, hostile: (String) -> SandboxError) throws(SandboxError) {
        if target.hasPrefix("/") { return }
        // home/a/x: its directory is home/a, depth 1. Under a root area the layer is a directory of
        // the sandbox's root: root/upper/usr/bin/x is seen at /usr/bin/x, depth 2.
        var depth = path.split(separator: "/").count - 1 - area.split(separator: "/").count
        for c in target.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." {
                depth -= 1
                if depth < 0 { throw hostile("a symlink to \(target.prefix(300)), which points out of the sandbox (above \(isRootArea(area) ? "its root" : area))") }
            } else {
                depth += 1
            }
        }
    }

    /// Which top-level file or area a path belongs to: one of `singleFiles`,
    /// `areas`, `checkpoints`, `checkpoints/N`, `checkpoints/N/checkpoint.json`
    /// or `checkpoints/N/<checkpointArea>`.
    static func areaOf(_ p: String) -> String? {
        if singleFiles.contains(p) { return p }
        if p == "root" { return nil }
        for a in areas where p == a || p.hasPrefix(a + "/") { return a }
        let parts = p.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts[0] == "checkpoints" else { return nil }
        if parts.count == 1 { return p }
        guard isCheckpointID(parts[1]) else { return nil }
        if parts.count == 2 { return p }
        let prefix = "checkpoints/\(parts[1])/"
        if parts[2] == "checkpoint.json" { return parts.count == 3 ? p : nil }
        return checkpointAreas.contains(String(parts[2])) ? prefix + parts[2] : nil
    }

    /// A hard link from one area to another: the exporter's stand-in for a
    /// checkpoint's copy of an equal file, which import writes as a file of its own.
    public static func isCopyLink(_ e: Entry) -> Bool {
        e.kind == .hardlink && e.link.flatMap(areaOf) != areaOf(e.path)
    }

    /// `checkpoints` and `checkpoints/N`: the directories that hold checkpoints.
    static func isCheckpointContainer(_ p: String) -> Bool {
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        return parts[0] == "checkpoints" && (parts.count == 1 || (parts.count == 2 && isCheckpointID(parts[1])))
    }

    static func isCheckpointFile(_ p: String) -> Bool {
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0] == "checkpoints" && isCheckpointID(parts[1]) && parts[2] == "checkpoint.json"
    }

    /// Checkpoint ids are positive decimal numbers (the directory names `SandboxSession.checkpoint` makes).
    static func isCheckpointID(_ s: Substring) -> Bool {
        !s.isEmpty && s.count <= 18 && s.first != "0" && s.allSatisfy { $0 >= "0" && $0 <= "9" }
    }

    /// Areas holding overlay upper layers (whiteouts allowed; the first component is the layer).
    static func isRootArea(_ area: String) -> Bool {
        area == "root/upper" || (area.hasPrefix("checkpoints/") && area.hasSuffix("/root"))
    }
}
