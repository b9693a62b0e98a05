import CSandbox
import Glibc

/// Indexes of earlier blocked-path walks, so that the directories of a large
/// workdir that have not changed since are not read again (walk.c says how an
/// index is trusted per directory). One entry per walked tree and pattern list,
/// in the `CacheDirectory`, keyed by the executable's build ID as well (the
/// walk's rules are code). An entry is written without a sync: it carries a
/// checksum, and a lost or torn one only means a full walk.
struct WalkIndex: Sendable {
    static let shared: WalkIndex? = CacheDirectory.shared.map { WalkIndex(directory: $0) }

    let directory: CacheDirectory
    /// Directories changed this recently are read again next time (see walk.c).
    var settleNanoseconds: Int64 = 2_000_000_000
    /// A tree smaller than this is read faster than its index is loaded and written.
    var minimumEntries = 2_000

    struct Walk {
        /// Paths relative to the walked root, as the bytes of their names: a
        /// name may be any bytes but "/" and NUL, and a blocked one must be
        /// masked by exactly that name (see BlockedPaths).
        var hits: [(type: UInt8, path: [UInt8])] = []
        var visited = 0
        var directoriesRead = 0
        var directoriesReused = 0
    }

    /// `root` walked for names matching `patterns`, from and into the index.
    func walk(_ root: String, patterns: [String]) throws(SandboxError) -> Walk {
        guard let id = SeccompCache.buildID else { return try sbxWalk(root, patterns: patterns, inodes: [], index: nil) }
        let key = WalkIndex.key(root: root, patterns: patterns, build: id)
        let name = "walk-\(SeccompCache.fnv1a(key)).idx"
        var prev: ArraySlice<UInt8> = []
        let keyBytes = Array(key.utf8) + [0]
        if let bytes = directory.read(name, limit: 64 << 20), bytes.count >= keyBytes.count,
           memcmp(bytes, keyBytes, keyBytes.count) == 0 {
            prev = bytes[keyBytes.count...]
        }
        var index = sbx_walk_index()
        index.settle_ns = settleNanoseconds
        let outcome = prev.withUnsafeBytes { raw -> Swift.Result<Walk, SandboxError> in
            index.prev = raw.baseAddress
            index.prev_len = raw.count
            do throws(SandboxError) { return .success(try sbxWalk(root, patterns: patterns, inodes: [], index: &index)) } catch { return .failure(error) }
        }
        defer { free(index.next) }
        var result = try outcome.get()
        result.directoriesRead = index.dirs_read
        result.directoriesReused = index.dirs_reused
        if let next = index.next, result.visited >= minimumEntries {
            let fresh = UnsafeRawBufferPointer(start: next, count: index.next_len)
            let same = fresh.count == prev.count && prev.withUnsafeBytes { $0.isEmpty || memcmp($0.baseAddress!, next, fresh.count) == 0 }
            if same {
                directory.markUsed(name)
            } else {
                directory.write(name, keyBytes + Array(fresh), durable: false)
                // Pruning reads every entry's key: only when an entry is new, not on every change of a known tree.
                guard prev.isEmpty else { return result }
                // This build's entries go after a month unused; other builds'
                // once past CacheDirectory.otherBuildGrace.
                let monthAgo = time(nil) - 30 * 86_400, graceStart = time(nil) - CacheDirectory.otherBuildGrace
                directory.prune(prefix: "walk-", head: 4096) { name, head, modified in
                    guard name.hasSuffix(".idx"), let bytes = head() else { return true }
                    return modified >= (WalkIndex.isCurrent(bytes, build: id) ? monthAgo : graceStart)
                }
            }
        }
        return result
    }

    /// The key names the tree and each pattern with its length, so no two lists share one.
    static func key(root: String, patterns: [String], build: String) -> String {
        "sandboxd-walk 1|build \(build)|\(root.utf8.count):\(root)|" + patterns.map { "\($0.utf8.count):\($0)" }.joined(separator: "|")
    }

    /// Entries of other builds can never match again; entries unused for 30
    /// days belong to workdirs that are probably gone.
    static func isCurrent(_ head: [UInt8], build: String) -> Bool {
        String(decoding: head.prefix { $0 != 0 }, as: UTF8.self).hasPrefix("sandboxd-walk 1|build \(build)|")
    }
}

/// `sbx_walk` for Swift: the matches as (type letter, path relative to `root` in raw bytes).
/// A walk that fails is an error, never an empty answer: the sandbox would
/// show what the profile hides.
func sbxWalk(_ root: String, patterns: [String], inodes: [(UInt64, UInt64)],
             index: UnsafeMutablePointer<sbx_walk_index>?) throws(SandboxError) -> WalkIndex.Walk {
    var cPatterns = patterns.map { strdup($0) }
    defer { cPatterns.forEach { free($0) } }
    let flat = inodes.flatMap { [$0.0, $0.1] }
    var visited = 0
    var failure: Int32 = 0
    let raw = cPatterns.withUnsafeMutableBufferPointer { pats -> UnsafeMutablePointer<CChar>? in
        let base = UnsafeRawPointer(pats.baseAddress)?.assumingMemoryBound(to: UnsafePointer<CChar>?.self)
        return flat.withUnsafeBufferPointer { ino in
            let r = sbx_walk(root, base, Int32(pats.count), ino.baseAddress, Int32(inodes.count), &visited, index)
            failure = errno
            return r
        }
    }
    guard let raw else {
        throw SandboxError("blocked paths: cannot walk \(root): \(errnoString(failure)); the masks the profile asks for cannot be found")
    }
    defer { free(raw) }
    var out = WalkIndex.Walk()
    out.visited = visited
    // Records "<type><path>\0", the last one ".".
    var record = UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self)
    while record.pointee != UInt8(ascii: ".") {
        let length = strlen(UnsafeRawPointer(record).assumingMemoryBound(to: CChar.self))
        out.hits.append((record.pointee, Array(UnsafeBufferPointer(start: record + 1, count: length - 1))))
        record += length + 1
    }
    return out
}
