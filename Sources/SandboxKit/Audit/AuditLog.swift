import Glibc

/// `audit.jsonl` of a named sandbox: one JSON object per line, one line per
/// exec and per notable event, append-only and hash-chained.
///
/// Each line is written as the compact JSON object of its fields, the last
/// two being `"prev"` (the previous line's hash, 64 zeros for the first) and
/// `"hash"`: the SHA-256 of the line up to and excluding `,"hash":"..."`,
/// with the closing `}` put back. `seq` counts from 1. Editing a line breaks
/// its hash; deleting or reordering lines breaks `prev` and `seq`; cutting
/// lines off the end is caught against the head the manifest records
/// (`audit.seq`, `audit.hash`) each time it is written. The manifest
/// follows the log (`SandboxManifest.apply`): lines after its head are a run
/// in progress, or ones a killed sandboxd wrote before its manifest.
public struct AuditLog {
    public static let genesis = String(repeating: "0", count: 64)
    /// Arguments and messages longer than this are cut in audit lines (the manifest has the run).
    static let maximumField = 4096

    public let path: String
    public init(path: String) { self.path = path }

    public struct Line: Sendable, Equatable {
        public var seq: Int64
        public var hash: String
        public var json: JSON
        /// The log's size in bytes up to and including this line (nil when not known).
        public var end: Int64? = nil
    }

    /// The correlation id of this sandboxd invocation: `--workflow-id`,
    /// else `$SANDBOXD_WORKFLOW_ID`, else a fresh random one.
    public static func workflowID(_ explicit: String?, environment: [String: String]) -> String {
        if let e = explicit, !e.isEmpty { return e }
        if let e = environment["SANDBOXD_WORKFLOW_ID"], !e.isEmpty { return e }
        return "wf-" + Clock.randomID()
    }

    /// Appends one event. `fields` come after the standard ones (seq, time,
    /// event, sandbox, workflow, pid). Returns the line written.
    @discardableResult
    public func append(event: String, sandbox: String, workflow: String, _ fields: [(String, JSON)] = [],
                       deferred: DeferredSync? = nil) throws(SandboxError) -> Line {
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw SandboxError("cannot open the audit log \(path): \(errnoString())") }
        var keep = false
        defer { if !keep { close(fd) } }
        let last = try lastLine(fd)
        let seq = (last?.seq ?? 0) + 1
        let prev = last?.hash ?? AuditLog.genesis
        var body: [(String, JSON)] = [
            ("seq", .int(seq)), ("time", .string(Clock.iso())), ("event", .string(event)),
            ("sandbox", .string(sandbox)), ("workflow", .string(workflow)), ("pid", .int(Int64(getpid()))),
        ]
        body += fields.map { ($0.0, AuditLog.clip($0.1)) }
        body.append(("prev", .string(prev)))
        let unhashed = JSON.object(body).compact()
        let hash = SHA256.hex(of: unhashed)
        let line = String(unhashed.dropLast()) + ",\"hash\":\"\(hash)\"}\n"
        let ok = line.utf8CString.withUnsafeBufferPointer { p in
            FileSys.writeAll(fd, UnsafeRawBufferPointer(start: p.baseAddress, count: p.count - 1))
        }
        guard ok else { throw SandboxError("cannot append to the audit log \(path): \(errnoString())") }
        let end = lseek(fd, 0, SEEK_CUR)
        if let deferred {
            deferred.add(fd)
            keep = true
        } else {
            guard fdatasync(fd) == 0 else { throw SandboxError("cannot append to the audit log \(path): \(errnoString())") }
        }
        return Line(seq: seq, hash: hash, json: .object(body + [("hash", .string(hash))]), end: end >= 0 ? Int64(end) : nil)
    }

    /// The whole lines after the one numbered `seq`, oldest first, read from
    /// the end of the log (a partial last line, from a writer killed
    /// mid-write, is left out). Empty when `seq` is the last line.
    public func lines(after seq: Int64) throws(SandboxError) -> [Line] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT { return [] }
            throw SandboxError("cannot open the audit log \(path): \(errnoString())")
        }
        defer { close(fd) }
        return try readBack(fd, after: seq).lines.reversed()
    }

    /// The last complete line. A torn last line (the writer was killed
    /// mid-write) is cut off so that the chain continues from the last whole one.
    private func lastLine(_ fd: Int32) throws(SandboxError) -> Line? {
        let back = try readBack(fd, after: .min, limit: 1)
        if back.torn {
            guard ftruncate(fd, off_t(back.wholeEnd)) == 0 else { throw SandboxError("cannot repair \(path): \(errnoString())") }
        }
        return back.lines.first
    }

    /// Whole lines read backwards from the end of the log, newest first: those
    /// numbered above `seq`, at most `limit`. Also where the whole lines end,
    /// and whether bytes of a torn line follow. Reads in chunks that double
    /// until they reach far enough back.
    private func readBack(_ fd: Int32, after seq: Int64, limit: Int = .max) throws(SandboxError) -> (lines: [Line], wholeEnd: Int, torn: Bool) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SandboxError("cannot stat \(path): \(errnoString())") }
        let size = Int(st.st_size)
        var chunk = 8192
        while size > 0 {
            let start = max(0, size - chunk)
            var buf = [UInt8](repeating: 0, count: size - start)
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
            guard n == buf.count else { throw SandboxError("cannot read \(path): \(errnoString())") }
            guard let lastNL = buf.lastIndex(of: 0x0A) else {
                if start == 0 { return ([], 0, true) }
                chunk *= 2
                continue
            }
            let wholeEnd = start + lastNL + 1
            // Whole lines of the chunk; the first may be cut unless the chunk starts the file.
            var pieces = buf[..<lastNL].split(separator: 0x0A, omittingEmptySubsequences: false)
            if start > 0 { pieces.removeFirst() }
            var found: [Line] = []
            var offset = Int64(wholeEnd)
            for piece in pieces.reversed() {
                if found.count == limit { break }
                let line = try parseLine(Array(piece), number: 0)
                if line.seq <= seq { return (found, wholeEnd, wholeEnd < size) }
                found.append(Line(seq: line.seq, hash: line.hash, json: line.json, end: offset))
                offset -= Int64(piece.count + 1)
            }
            if start == 0 || found.count == limit { return (found, wholeEnd, wholeEnd < size) }
            chunk *= 2
        }
        return ([], 0, false)
    }

    private func parseLine(_ bytes: [UInt8], number: Int) throws(SandboxError) -> Line {
        guard let json = try? JSONParser.parse(bytes), let seq = json["seq"]?.intValue, let hash = json["hash"]?.stringValue else {
            throw SandboxError("the audit log \(path) ends with a damaged line; run `sandboxd audit verify` to see where")
        }
        return Line(seq: seq, hash: hash, json: json)
    }

    static func clip(_ v: JSON) -> JSON {
        switch v {
        case .string(let s) where s.utf8.count > maximumField: return .string(String(s.prefix(maximumField)) + "...")
        case .array(let a): return .array(a.prefix(256).map(clip))
        default: return v
        }
    }

    // MARK: Verification

    public struct Verification: Sendable, Equatable {
        public var lines: Int
        public var head: String
        /// Empty when the log is intact.
        public var problems: [String]
        public var ok: Bool { problems.isEmpty }
    }

    /// Checks every line's hash, the chain of `prev`, the sequence numbers,
    /// and that the log still holds `head` (the last line the manifest recorded).
    public func verify(head: (seq: Int64, hash: String)? = nil) throws(SandboxError) -> Verification {
        guard let bytes = try FileSys.read(path, limit: 1 << 30) else {
            return Verification(lines: 0, head: AuditLog.genesis, problems: ["no audit log at \(path)"])
        }
        var problems: [String] = []
        var prev = AuditLog.genesis
        var expectedSeq: Int64 = 1
        var count = 0
        var seen: [Int64: String] = [:]
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        for (i, raw) in lines.enumerated() {
            let number = i + 1
            if raw.isEmpty {
                if i == lines.count - 1 { break }
                problems.append("line \(number): empty line")
                continue
            }
            if i == lines.count - 1 {
                problems.append("line \(number): no newline at the end (a torn or edited last line)")
            }
            count += 1
            let text = Array(raw)
            guard let json = try? JSONParser.parse(text) else {
                problems.append("line \(number): not valid JSON (edited?)")
                continue
            }
            guard let seq = json["seq"]?.intValue, let hash = json["hash"]?.stringValue, let linePrev = json["prev"]?.stringValue else {
                problems.append("line \(number): missing seq, prev or hash")
                continue
            }
            // The hashed text: the line without its trailing `,"hash":"<64 hex>"}`, with `}` put back.
            let suffix = ",\"hash\":\"\(hash)\"}"
            let lineText = String(decoding: text, as: UTF8.self)
            if !lineText.hasSuffix(suffix) {
                problems.append("line \(number) (seq \(seq)): hash is not the last field (edited?)")
            } else if SHA256.hex(of: String(lineText.dropLast(suffix.count)) + "}") != hash {
                problems.append("line \(number) (seq \(seq)): content does not match its hash (edited)")
            }
            if seq != expectedSeq {
                problems.append("line \(number): seq \(seq) where \(expectedSeq) was expected (a line was removed, inserted or moved)")
            }
            if linePrev != prev {
                let from = seen.first(where: { $0.value == linePrev }).map { "seq \($0.key)" } ?? "no line present"
                problems.append("line \(number) (seq \(seq)): prev does not match the line before it (it follows \(from); removed or reordered lines)")
            }
            seen[seq] = hash
            prev = hash
            expectedSeq = seq + 1
        }
        // The head recorded in the manifest must still be in the log.
        if let head, head.seq > 0, seen[head.seq] != head.hash {
            problems.append("the head recorded in the manifest (seq \(head.seq)) is not in the log: lines were removed from the end or rewritten")
        }
        return Verification(lines: count, head: prev, problems: problems)
    }

    /// Every line, parsed (for `inspect` and tests); damaged lines are skipped.
    public func lines() throws(SandboxError) -> [JSON] {
        guard let bytes = try FileSys.read(path, limit: 1 << 30) else { return [] }
        return bytes.split(separator: 0x0A).compactMap { try? JSONParser.parse(Array($0)) }
    }
}
