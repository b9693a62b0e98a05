import CGit2
import Glibc

/// libgit2 is initialised once per process, on first use (a global `let` is initialised lazily and atomically).
let libgit2Ready: Bool = {
    git_libgit2_init()
    return true
}()

/// An object id, as 40 lowercase hex digits.
struct GitOID: Hashable, Sendable, CustomStringConvertible, Comparable {
    let hex: String

    init(_ raw: git_oid) {
        var r = raw
        var buf = [CChar](repeating: 0, count: 41)
        hex = buf.withUnsafeMutableBufferPointer { b in
            git_oid_tostr(b.baseAddress, 41, &r)
            return String(cString: b.baseAddress!)
        }
    }

    init(_ ptr: UnsafePointer<git_oid>) { self.init(ptr.pointee) }

    init?(hex: String) {
        guard hex.utf8.count == 40, hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            return nil
        }
        self.hex = hex
    }

    var raw: git_oid {
        var o = git_oid()
        _ = git_oid_fromstr(&o, hex)
        return o
    }

    var short: String { String(hex.prefix(12)) }
    var description: String { hex }
    static func < (a: GitOID, b: GitOID) -> Bool { a.hex < b.hex }
}

/// The message of libgit2's last error.
func gitLastErrorMessage(_ rc: Int32) -> String {
    if let e = git_error_last(), let m = e.pointee.message { return String(cString: m) }
    return "libgit2 error \(rc)"
}

/// Throws a SandboxError naming the operation when a libgit2 call failed.
@inline(__always)
func gitCheck(_ rc: Int32, _ what: @autoclosure () -> String) throws {
    if rc < 0 { throw SandboxError("\(what()): \(gitLastErrorMessage(rc))") }
}

/// A `git_strarray` borrowed for the duration of `body`.
func withStrArray<R>(_ strings: [String], _ body: (UnsafeMutablePointer<git_strarray>) throws -> R) rethrows -> R {
    let cstrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { cstrs.forEach { free($0) } }
    var copy = cstrs
    return try copy.withUnsafeMutableBufferPointer { buf in
        var arr = git_strarray(strings: buf.baseAddress, count: strings.count)
        return try body(&arr)
    }
}

/// An open repository (owned; freed on deinit). Not thread-safe: use from one thread.
final class GitRepo {
    let ptr: OpaquePointer

    private init(_ ptr: OpaquePointer) { self.ptr = ptr }

    deinit { git_repository_free(ptr) }

    /// Opens the repository containing `path` (searching parent directories).
    static func discover(_ path: String) throws -> GitRepo {
        _ = libgit2Ready
        var p: OpaquePointer?
        let rc = git_repository_open_ext(&p, path, 0, nil)
        if rc == GIT_ENOTFOUND.rawValue { throw SandboxError("\(path) is not inside a git repository") }
        try gitCheck(rc, "cannot open repository \(path)")
        return GitRepo(p!)
    }

    /// Opens exactly `path` (a work tree with `.git`, or a git directory), without searching.
    static func open(_ path: String) throws -> GitRepo {
        _ = libgit2Ready
        var p: OpaquePointer?
        let rc = git_repository_open_ext(&p, path, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue, nil)
        try gitCheck(rc, "cannot open repository \(path)")
        return GitRepo(p!)
    }

    /// Opens a git directory as a bare repository: its config's `core.worktree` and any gitfile are ignored.
    static func openBare(_ gitDir: String) throws -> GitRepo {
        _ = libgit2Ready
        var p: OpaquePointer?
        try gitCheck(git_repository_open_bare(&p, gitDir), "cannot open git directory \(gitDir)")
        return GitRepo(p!)
    }

    private static func trimSlash(_ s: String) -> String {
        var s = s
        while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
        return s
    }

    /// The git directory (no trailing slash).
    var gitDir: String { Self.trimSlash(String(cString: git_repository_path(ptr))) }
    /// The common directory: the main repository's git directory, also for linked worktrees.
    var commonDir: String { Self.trimSlash(String(cString: git_repository_commondir(ptr))) }
    var workdir: String? { git_repository_workdir(ptr).map { Self.trimSlash(String(cString: $0)) } }
    var isBare: Bool { git_repository_is_bare(ptr) != 0 }
    var isWorktree: Bool { git_repository_is_worktree(ptr) != 0 }

    func setWorkdir(_ path: String) throws {
        try gitCheck(git_repository_set_workdir(ptr, path, 0), "cannot set work tree \(path)")
    }

    // MARK: references

    /// The object a reference points at, following symbolic references; nil when it does not exist.
    func refTarget(_ name: String) throws -> GitOID? {
        var oid = git_oid()
        let rc = git_reference_name_to_id(&oid, ptr, name)
        if rc == GIT_ENOTFOUND.rawValue { return nil }
        try gitCheck(rc, "cannot read reference \(name)")
        return GitOID(oid)
    }

    /// The commit a revision expression names (`HEAD`, a branch, an id), peeled to a commit.
    func resolveCommit(_ spec: String) throws -> GitOID {
        var obj: OpaquePointer?
        let rc = git_revparse_single(&obj, ptr, spec)
        if rc == GIT_ENOTFOUND.rawValue { throw SandboxError("unknown revision '\(spec)'") }
        try gitCheck(rc, "cannot resolve '\(spec)'")
        defer { git_object_free(obj) }
        var commit: OpaquePointer?
        try gitCheck(git_object_peel(&commit, obj, GIT_OBJECT_COMMIT), "'\(spec)' does not name a commit")
        defer { git_object_free(commit) }
        return GitOID(git_object_id(commit)!)
    }

    struct RefInfo {
        var name: String
        /// Direct target; nil for symbolic references.
        var target: GitOID?
        var symbolic: String?
    }

    /// Every reference (loose and packed), sorted by name.
    func references() throws -> [RefInfo] {
        var it: OpaquePointer?
        try gitCheck(git_reference_iterator_new(&it, ptr), "cannot list references")
        defer { git_reference_iterator_free(it) }
        var out: [RefInfo] = []
        while true {
            var ref: OpaquePointer?
            let rc = git_reference_next(&ref, it)
            if rc == GIT_ITEROVER.rawValue { break }
            try gitCheck(rc, "cannot list references")
            defer { git_reference_free(ref) }
            let name = String(cString: git_reference_name(ref))
            if git_reference_type(ref) == GIT_REFERENCE_SYMBOLIC {
                out.append(RefInfo(name: name, target: nil, symbolic: String(cString: git_reference_symbolic_target(ref))))
            } else if let t = git_reference_target(ref) {
                out.append(RefInfo(name: name, target: GitOID(t), symbolic: nil))
            }
        }
        return out.sorted { $0.name < $1.name }
    }

    enum CASResult { case updated, lost }

    /// Compare-and-swap of a reference: set `name` to `new` only if it still points at `expected`
    /// (nil: only if it does not exist). `.lost` when another writer got there first or holds its lock.
    func compareAndSwap(_ name: String, to new: GitOID, expected: GitOID?, log: String) throws -> CASResult {
        var newRaw = new.raw
        var out: OpaquePointer?
        // The expected value is checked under the ref's lock file; an all-zero id means "must not
        // exist" (git_reference_create without force would check that before taking the lock).
        var old = expected?.raw ?? git_oid()
        let rc = git_reference_create_matching(&out, ptr, name, &newRaw, 1, &old, log)
        git_reference_free(out)
        if rc == GIT_EMODIFIED.rawValue || rc == GIT_EEXISTS.rawValue || rc == GIT_ELOCKED.rawValue {
            return .lost
        }
        // libgit2 reports a missing ref whose expected value was given as ENOTFOUND: someone deleted it.
        if rc == GIT_ENOTFOUND.rawValue && expected != nil { return .lost }
        try gitCheck(rc, "cannot update \(name)")
        return .updated
    }

    /// Deletes a reference if it still points at `expected`.
    func deleteRef(_ name: String, expected: GitOID) throws -> Bool {
        var ref: OpaquePointer?
        let rc = git_reference_lookup(&ref, ptr, name)
        if rc == GIT_ENOTFOUND.rawValue { return false }
        try gitCheck(rc, "cannot read \(name)")
        defer { git_reference_free(ref) }
        guard let t = git_reference_target(ref), GitOID(t) == expected else { return false }
        let drc = git_reference_delete(ref)
        if drc == GIT_EMODIFIED.rawValue || drc == GIT_ELOCKED.rawValue { return false }
        try gitCheck(drc, "cannot delete \(name)")
        return true
    }

    // MARK: objects

    func odb() throws -> GitODB {
        var o: OpaquePointer?
        try gitCheck(git_repository_odb(&o, ptr), "cannot open object database")
        return GitODB(o!)
    }

    func hasObject(_ oid: GitOID) throws -> Bool { try odb().has(oid) }

    func writeBlob(_ bytes: [UInt8]) throws -> GitOID {
        var oid = git_oid()
        let rc = bytes.withUnsafeBytes { git_blob_create_from_buffer(&oid, ptr, $0.baseAddress, $0.count) }
        try gitCheck(rc, "cannot write blob")
        return GitOID(oid)
    }

    func readBlob(_ oid: GitOID) throws -> [UInt8] {
        var raw = oid.raw
        var blob: OpaquePointer?
        try gitCheck(git_blob_lookup(&blob, ptr, &raw), "cannot read blob \(oid.short)")
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard size > 0, let p = git_blob_rawcontent(blob) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: size))
    }

    struct TreeEntry {
        var name: String
        var oid: GitOID
        var mode: UInt32
        var isTree: Bool { mode == GIT_FILEMODE_TREE.rawValue }
    }

    func treeEntries(_ tree: GitOID) throws -> [TreeEntry] {
        var raw = tree.raw
        var t: OpaquePointer?
        try gitCheck(git_tree_lookup(&t, ptr, &raw), "cannot read tree \(tree.short)")
        defer { git_tree_free(t) }
        var out: [TreeEntry] = []
        for i in 0..<git_tree_entrycount(t) {
            let e = git_tree_entry_byindex(t, i)
            out.append(TreeEntry(
                name: String(cString: git_tree_entry_name(e)),
                oid: GitOID(git_tree_entry_id(e)!),
                mode: git_tree_entry_filemode_raw(e).rawValue))
        }
        return out
    }

    func writeTree(_ entries: [TreeEntry]) throws -> GitOID {
        var bld: OpaquePointer?
        try gitCheck(git_treebuilder_new(&bld, ptr, nil), "cannot build tree")
        defer { git_treebuilder_free(bld) }
        for e in entries {
            var raw = e.oid.raw
            try gitCheck(git_treebuilder_insert(nil, bld, e.name, &raw, git_filemode_t(rawValue: e.mode)),
                         "cannot add \(e.name) to tree")
        }
        var oid = git_oid()
        try gitCheck(git_treebuilder_write(&oid, bld), "cannot write tree")
        return GitOID(oid)
    }

    struct CommitInfo {
        var tree: GitOID
        var parents: [GitOID]
        var message: String
    }

    func commitInfo(_ oid: GitOID) throws -> CommitInfo {
        var raw = oid.raw
        var c: OpaquePointer?
        try gitCheck(git_commit_lookup(&c, ptr, &raw), "cannot read commit \(oid.short)")
        defer { git_commit_free(c) }
        var parents: [GitOID] = []
        for i in 0..<git_commit_parentcount(c) { parents.append(GitOID(git_commit_parent_id(c, i)!)) }
        return CommitInfo(
            tree: GitOID(git_commit_tree_id(c)!), parents: parents,
            message: git_commit_message(c).map { String(cString: $0) } ?? "")
    }

    /// Writes a commit object (no reference is updated).
    func createCommit(tree: GitOID, parents: [GitOID], author: (name: String, email: String),
                      committer: (name: String, email: String), message: String) throws -> GitOID {
        var treeRaw = tree.raw
        var treeObj: OpaquePointer?
        try gitCheck(git_tree_lookup(&treeObj, ptr, &treeRaw), "cannot read tree \(tree.short)")
        defer { git_tree_free(treeObj) }
        var parentObjs: [OpaquePointer?] = []
        defer { parentObjs.forEach { git_commit_free($0) } }
        for p in parents {
            var r = p.raw
            var c: OpaquePointer?
            try gitCheck(git_commit_lookup(&c, ptr, &r), "cannot read commit \(p.short)")
            parentObjs.append(c)
        }
        var a: UnsafeMutablePointer<git_signature>?
        var m: UnsafeMutablePointer<git_signature>?
        try gitCheck(git_signature_now(&a, author.name, author.email), "bad author signature")
        defer { git_signature_free(a) }
        try gitCheck(git_signature_now(&m, committer.name, committer.email), "bad committer signature")
        defer { git_signature_free(m) }
        var oid = git_oid()
        let rc = parentObjs.withUnsafeMutableBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: OpaquePointer?.self, capacity: buf.count) { pp in
                git_commit_create(&oid, ptr, nil, a, m, nil, message, treeObj, buf.count, pp)
            }
        }
        try gitCheck(rc, "cannot write commit")
        return GitOID(oid)
    }

    /// Whether `commit` is `ancestor` or one of its descendants.
    func isDescendant(_ commit: GitOID, ofOrEqual ancestor: GitOID) throws -> Bool {
        if commit == ancestor { return true }
        var a = commit.raw
        var b = ancestor.raw
        let rc = git_graph_descendant_of(ptr, &a, &b)
        try gitCheck(rc, "cannot compare \(commit.short) with \(ancestor.short)")
        return rc == 1
    }

    static let emptyTree = GitOID(hex: "4b825dc642cb6eb9a060e54bf8d69288fbee4904")!
}

/// An object database handle (owned).
final class GitODB {
    let ptr: OpaquePointer
    init(_ ptr: OpaquePointer) { self.ptr = ptr }
    deinit { git_odb_free(ptr) }

    /// Opens `objectsDir` (with its `info/alternates`) as a standalone object database.
    static func open(objectsDir: String) throws -> GitODB {
        _ = libgit2Ready
        var o: OpaquePointer?
        try gitCheck(git_odb_open(&o, objectsDir), "cannot open object database \(objectsDir)")
        return GitODB(o!)
    }

    func has(_ oid: GitOID) -> Bool {
        var raw = oid.raw
        return git_odb_exists(ptr, &raw) == 1
    }

    struct Object {
        var type: git_object_t
        var data: [UInt8]
    }

    func read(_ oid: GitOID) throws -> Object {
        var raw = oid.raw
        var obj: OpaquePointer?
        try gitCheck(git_odb_read(&obj, ptr, &raw), "cannot read object \(oid.short)")
        defer { git_odb_object_free(obj) }
        let size = git_odb_object_size(obj)
        let data: [UInt8] = size == 0 ? [] : Array(UnsafeRawBufferPointer(start: git_odb_object_data(obj), count: size))
        return Object(type: git_odb_object_type(obj), data: data)
    }

    @discardableResult
    func write(_ object: Object) throws -> GitOID {
        var oid = git_oid()
        let rc = object.data.withUnsafeBytes { git_odb_write(&oid, ptr, $0.baseAddress, $0.count, object.type) }
        try gitCheck(rc, "cannot write object")
        return GitOID(oid)
    }

    func refresh() { git_odb_refresh(ptr) }
}

/// Object graph helpers shared by lock sharing and the gate.
enum GitObjects {
    /// The ids an object refers to: a commit's tree and parents, a tree's entries, a tag's target.
    static func children(of object: GitODB.Object) -> [GitOID] {
        switch object.type {
        case GIT_OBJECT_COMMIT:
            var out: [GitOID] = []
            // Header lines "tree <hex>" and "parent <hex>" come first, up to a blank line.
            var lineStart = 0
            let d = object.data
            var i = 0
            while i < d.count {
                if d[i] == 10 {
                    if i == lineStart { break }
                    let line = String(decoding: d[lineStart..<i], as: UTF8.self)
                    if line.hasPrefix("tree "), let o = GitOID(hex: String(line.dropFirst(5))) { out.append(o) }
                    if line.hasPrefix("parent "), let o = GitOID(hex: String(line.dropFirst(7))) { out.append(o) }
                    lineStart = i + 1
                }
                i += 1
            }
            return out
        case GIT_OBJECT_TREE:
            // Entries: "<mode> <name>\0<20-byte id>".
            var out: [GitOID] = []
            let d = object.data
            var i = 0
            while i < d.count {
                var modeEnd = i
                while modeEnd < d.count && d[modeEnd] != 32 { modeEnd += 1 }
                let mode = String(decoding: d[i..<modeEnd], as: UTF8.self)
                var nul = modeEnd
                while nul < d.count && d[nul] != 0 { nul += 1 }
                guard nul + 21 <= d.count else { break }
                var raw = git_oid()
                withUnsafeMutableBytes(of: &raw.id) { dst in
                    for k in 0..<20 { dst[k] = d[nul + 1 + k] }
                }
                // Gitlinks (160000) name commits of other repositories: never copied.
                if mode != "160000" { out.append(GitOID(raw)) }
                i = nul + 21
            }
            return out
        case GIT_OBJECT_TAG:
            if let line = String(decoding: object.data.prefix(48), as: UTF8.self).split(separator: "\n").first,
               line.hasPrefix("object "), let o = GitOID(hex: String(line.dropFirst(7))) {
                return [o]
            }
            return []
        default:
            return []
        }
    }

    /// Copies every object reachable from `roots` that `dst` lacks, children before parents (so `dst`
    /// never holds an object whose children are missing). Objects `dst` has are assumed complete.
    /// Returns the number of objects and bytes copied.
    @discardableResult
    static func copyMissing(from src: GitODB, to dst: GitODB, roots: [GitOID]) throws -> (objects: Int, bytes: Int) {
        var order: [(GitOID, GitODB.Object)] = []
        var seen = Set<GitOID>()
        // Iterative post-order DFS.
        var stack: [(GitOID, Bool)] = roots.reversed().map { ($0, false) }
        var pending: [GitOID: GitODB.Object] = [:]
        while let (oid, expanded) = stack.popLast() {
            if expanded {
                if let obj = pending.removeValue(forKey: oid) { order.append((oid, obj)) }
                continue
            }
            if seen.contains(oid) { continue }
            seen.insert(oid)
            if dst.has(oid) { continue }
            let obj = try src.read(oid)
            pending[oid] = obj
            stack.append((oid, true))
            for child in children(of: obj).reversed() where !seen.contains(child) {
                stack.append((child, false))
            }
        }
        var bytes = 0
        for (oid, obj) in order {
            let written = try dst.write(obj)
            guard written == oid else { throw SandboxError("object \(oid.short) changed while copying") }
            bytes += obj.data.count
        }
        return (order.count, bytes)
    }
}
