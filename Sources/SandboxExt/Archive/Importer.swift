import CArchive
import Glibc

@_silgen_name("renameat2")
private func sys_renameat2(_ olddirfd: Int32, _ oldpath: UnsafePointer<CChar>, _ newdirfd: Int32,
                           _ newpath: UnsafePointer<CChar>, _ flags: UInt32) -> Int32

/// What an import created.
public struct ImportSummary: Sendable {
    public var name: String
    public var entries: Int
    public var bytes: UInt64
    public var sha256: String
    public var seconds: Double
    /// Whether the imported audit log's hash chain verified.
    public var auditIntact: Bool
    public var auditProblems: [String]
}

/// `sandboxd import FILE [--name NEW]`.
///
/// 1. The digest in the trailer is checked against the whole file before
///    anything is unpacked.
/// 2. The index (first entry) is checked: paths, types, modes, links,
///    sizes, the size cap (see `ExportFormat.parseIndex`).
/// 3. Entries are extracted into `sandboxes/.import-PID-*`, each one
///    compared with its index entry first (path, type, size, link, no
///    setuid/setgid, only overlay and user xattrs), with libarchive's own
///    guards on (no `..`, nothing through symlinks, no overwrites).
/// 4. The bytes parsed are hashed again and must match the digest (the
///    file cannot be swapped between the check and the extraction).
/// 5. One rename makes the sandbox visible. On any refusal the staging
///    directory is removed: nothing is written.
public enum SandboxImporter {
    /// Context of libarchive's read callback: the file up to the trailer, hashed as it is read.
    final class Source {
        let fd: Int32
        var remaining: UInt64
        let hasher = ArchiveDigest()
        let buffer: UnsafeMutableRawPointer
        let capacity = 1 << 20
        var failed: Int32 = 0
        init(fd: Int32, length: UInt64) {
            self.fd = fd
            remaining = length
            buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        }
        deinit { buffer.deallocate() }

        func next() -> Int {
            guard remaining > 0 else { return 0 }
            while true {
                let n = read(fd, buffer, Int(min(UInt64(capacity), remaining)))
                if n < 0 && errno == EINTR { continue }
                if n < 0 { failed = errno; return -1 }
                if n == 0 { failed = EIO; return -1 }  // the file shrank under us
                remaining -= UInt64(n)
                hasher.update(UnsafeRawBufferPointer(start: buffer, count: n))
                return n
            }
        }
    }

    /// A worker sandbox is attached to `repo` (default: the repository it was exported from) as
    /// worker `worker` (default: its own).
    public static func importArchive(store: SandboxStore, file: String, name newName: String?, workflow: String,
                                     maximumBytes: UInt64 = ExportFormat.defaultMaximumBytes,
                                     repo: String? = nil, worker: String? = nil) throws(SandboxError) -> ImportSummary {
        let start = Clock.monotonic()
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError("import: cannot open \(file): \(FileSys.errorText())") }
        defer { close(fd) }

        // 1. The digest, over everything before the trailer.
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw SandboxError("import: \(file) is not a regular file") }
        let size = UInt64(st.st_size)
        guard size > UInt64(ExportFormat.trailerSize) else { throw SandboxError("refusing the archive: \(file) is too short to be a sandboxd export") }
        var tail = [UInt8](repeating: 0, count: ExportFormat.trailerSize)
        guard tail.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, off_t(size) - off_t(ExportFormat.trailerSize)) }) == ExportFormat.trailerSize,
              let trailer = ExportFormat.parseTrailer(tail) else {
            throw SandboxError("refusing the archive: \(file) has no sandboxd digest trailer (not made by `sandboxd export`, or truncated)")
        }
        guard trailer.length + UInt64(ExportFormat.trailerSize) == size else {
            throw SandboxError("refusing the archive: \(file) is \(size) bytes but its trailer covers \(trailer.length) (truncated or appended to)")
        }
        let first = Source(fd: fd, length: trailer.length)
        while true {
            let n = first.next()
            if n == 0 { break }
            if n < 0 { throw SandboxError("import: cannot read \(file): \(FileSys.errorText(first.failed))") }
        }
        let digest = first.hasher.finalize()
        guard digest == trailer.digest else {
            throw SandboxError("refusing the archive: \(file): content digest mismatch (sha256 \(SHA256.hex(digest)), recorded \(SHA256.hex(trailer.digest))); the file is damaged or was altered")
        }
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw SandboxError("import: cannot rewind \(file): \(FileSys.errorText())") }

        // 2. Open the stream and read the index.
        guard let a = archive_read_new() else { throw SandboxError("import: libarchive: out of memory") }
        defer { archive_read_free(a) }
        archive_read_support_filter_zstd(a)
        archive_read_support_format_tar(a)
        let source = Source(fd: fd, length: trailer.length)
        let readCB: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int = { _, client, out in
            let s = Unmanaged<Source>.fromOpaque(client!).takeUnretainedValue()
            let n = s.next()
            out?.pointee = UnsafeRawPointer(s.buffer)
            return n
        }
        guard archive_read_open(a, Unmanaged.passUnretained(source).toOpaque(), nil, readCB, nil) == ARCHIVE_OK else {
            throw SandboxError("refusing the archive: \(file): not a zstd-compressed tar stream (\(archiveError(a)))")
        }
        var entry: OpaquePointer? = nil
        guard archive_read_next_header(a, &entry) == ARCHIVE_OK, let e0 = entry,
              String(cString: archive_entry_pathname(e0)) == ExportFormat.indexName else {
            throw SandboxError("refusing the archive: its first entry is not \(ExportFormat.indexName)")
        }
        let indexSize = archive_entry_size(e0)
        guard indexSize > 0, indexSize <= Int64(ExportFormat.maximumIndexBytes) else {
            throw SandboxError("refusing the archive: its index is \(indexSize) bytes (at most \(ExportFormat.maximumIndexBytes))")
        }
        var indexBytes = [UInt8](repeating: 0, count: Int(indexSize))
        var got = 0
        while got < indexBytes.count {
            let n = indexBytes.withUnsafeMutableBytes { archive_read_data(a, $0.baseAddress! + got, $0.count - got) }
            guard n > 0 else { throw SandboxError("refusing the archive: its index is truncated (\(archiveError(a)))") }
            got += n
        }
        let index = try ExportFormat.parseIndex(indexBytes, maximumBytes: maximumBytes)

        let name = newName ?? index.sandbox
        try SandboxStore.validateName(name)
        store.collectGarbage()
        try store.ensureLayout()
        if store.exists(name) {
            throw SandboxError("import: a sandbox named '\(name)' already exists; use --name NEW or `sandboxd rm \(name)` first")
        }
        var vfs = statvfs()
        if statvfs(store.sandboxesDir, &vfs) == 0 {
            let free = UInt64(vfs.f_bavail) * UInt64(vfs.f_frsize)
            if index.writtenBytes > free {
                throw SandboxError("import: the archive holds \(index.writtenBytes) bytes of files but \(store.sandboxesDir) has \(free) free")
            }
        }

        // 3. Extract into a hidden staging directory.
        let stagingName = ".import-\(getpid())-\(Clock.randomID(bytes: 4))-\(name)"
        let stagingPath = store.sandboxesDir + "/" + stagingName
        try FileSys.makeDirectory(stagingPath, mode: 0o711)
        chmod(stagingPath, 0o711)
        var attached: WorkerGitState.Attached? = nil
        do throws(SandboxError) {
            guard let staging = FileSys.realPath(stagingPath) else { throw SandboxError("import: cannot resolve \(stagingPath)") }
            try extract(a, index: index, into: staging)
            // 4. Whatever libarchive did not need to read still counts toward the digest.
            while true {
                let n = source.next()
                if n == 0 { break }
                if n < 0 { throw SandboxError("import: cannot read \(file): \(FileSys.errorText(source.failed))") }
            }
            guard source.hasher.finalize() == trailer.digest else {
                throw SandboxError("refusing the archive: \(file) changed while it was being imported (digest mismatch)")
            }
            let summary = try finish(store: store, staging: staging, name: name, index: index, file: file,
                                     digest: SHA256.hex(digest), workflow: workflow, start: start,
                                     attach: { (m: SandboxManifest) throws(SandboxError) in
                                         attached = try attachWorktree(m, staging: staging, repo: repo, worker: worker, stateDir: store.root)
                                         return attached
                                     })
            let final = store.paths(name).dir
            guard sys_renameat2(AT_FDCWD, stagingPath, AT_FDCWD, final, 1 /* RENAME_NOREPLACE */) == 0 else {
                throw SandboxError("import: cannot create \(final): \(FileSys.errorText())")
            }
            FileSys.fsyncDirectory(store.sandboxesDir)
            return summary
        } catch {
            if let attached { WorkerGitState.detach(attached) }
            try? FileSys.removeTree(stagingPath)
            throw error
        }
    }

    /// A worker's sandbox whose archive carries its git state is attached to a
    /// repository; one without (a version 1 archive) becomes a plain sandbox on
    /// the archived files, as before.
    static func attachWorktree(_ m: SandboxManifest, staging: String, repo: String?, worker: String?,
                               stateDir: String) throws(SandboxError) -> WorkerGitState.Attached? {
        let carried = FileSys.exists(staging + "/gitdir")
        guard let r = m.repository else {
            if carried || repo != nil || worker != nil {
                throw SandboxError(carried ? "refusing the archive: it carries a git directory but its manifest names no repository"
                                           : "import: --repo and --worker apply to a worker's sandbox; \(m.name) is not one")
            }
            return nil
        }
        guard carried else { return nil }
        return try WorkerGitState.attach(staging: staging, sandbox: m.name, recorded: r, repo: repo, worker: worker, stateDir: stateDir)
    }

    /// Every entry after the index, each checked against the index before it is written.
    static func extract(_ a: OpaquePointer, index: ExportFormat.Index, into staging: String) throws(SandboxError) {
        guard let disk = archive_write_disk_new() else { throw SandboxError("import: libarchive: out of memory") }
        defer { archive_write_free(disk) }
        var flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS
            | ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_NO_OVERWRITE
        if geteuid() == 0 { flags |= ARCHIVE_EXTRACT_OWNER }
        archive_write_disk_set_options(disk, flags)

        var entry: OpaquePointer? = nil
        for expected in index.entries {
            func hostile(_ why: String) -> SandboxError { SandboxError("refusing the archive: \(expected.path.prefix(300)): \(why)") }
            let rc = archive_read_next_header(a, &entry)
            if rc == ARCHIVE_EOF { throw hostile("the archive ends before this entry of its index") }
            guard rc >= ARCHIVE_WARN, let e = entry else { throw hostile("unreadable entry header (\(archiveError(a)))") }
            var path = String(cString: archive_entry_pathname(e))
            let type = archive_entry_filetype(e)
            // tar writes directories with a trailing slash.
            if type == S_IFDIR && path.hasSuffix("/") && path.count > 1 { path.removeLast() }
            guard path == expected.path else { throw hostile("the archive has \(path.prefix(300)) where its index says this") }
            let hard = archive_entry_hardlink(e).map { String(cString: $0) }
            let mode = UInt32(archive_entry_perm(e))
            let size = archive_entry_size(e)
            switch expected.kind {
            case .file:
                guard type == S_IFREG, hard == nil else { throw hostile("not a regular file, as the index says") }
                guard size >= 0, UInt64(size) == expected.size else {
                    throw hostile("its header says \(size) bytes, the index \(expected.size): an entry larger than declared")
                }
            case .directory: guard type == S_IFDIR else { throw hostile("not a directory, as the index says") }
            case .symlink:
                guard type == S_IFLNK, let t = archive_entry_symlink(e).map({ String(cString: $0) }), t == expected.link else {
                    throw hostile("not the symlink the index describes")
                }
            case .hardlink:
                guard hard == expected.link, size <= 0 else { throw hostile("not the hard link the index describes") }
            case .whiteout:
                guard type == S_IFCHR, archive_entry_rdev(e) == 0 else { throw hostile("a device node (only whiteouts, 0:0, are carried)") }
            case .fifo: guard type == S_IFIFO else { throw hostile("not a FIFO, as the index says") }
            }
            if expected.kind != .directory, mode & 0o6000 != 0 { throw hostile("setuid or setgid file") }
            guard mode == expected.mode & 0o7777 || expected.kind == .hardlink else { throw hostile("mode differs from the index") }
            archive_entry_xattr_reset(e)
            var xname: UnsafePointer<CChar>? = nil
            var xvalue: UnsafeRawPointer? = nil
            var xsize = 0
            while archive_entry_xattr_next(e, &xname, &xvalue, &xsize) == ARCHIVE_OK {
                let n = xname.map { String(cString: $0) } ?? ""
                guard FileSys.isCarriedXattr(n) else { throw hostile("extended attribute \(n.prefix(100)) (only user.* and trusted.overlay.* are carried)") }
            }

            if ExportFormat.isCopyLink(expected), let link = expected.link {
                // Written before libarchive sets the directories' times, at close.
                _ = try FileSys.copyTree(staging + "/" + link, staging + "/" + path)
                continue
            }
            archive_entry_set_pathname(e, staging + "/" + path)
            if let hard { archive_entry_set_hardlink(e, staging + "/" + hard) }
            let wrc = archive_write_header(disk, e)
            guard wrc >= ARCHIVE_WARN else { throw hostile("cannot extract: \(archiveError(disk))") }
            guard expected.kind == .file, size > 0 else { continue }
            var buf: UnsafeRawPointer? = nil
            var len = 0
            var offset: Int64 = 0
            while true {
                let r = archive_read_data_block(a, &buf, &len, &offset)
                if r == ARCHIVE_EOF { break }
                guard r >= ARCHIVE_WARN else { throw hostile("damaged data (\(archiveError(a)))") }
                guard offset >= 0, UInt64(offset) + UInt64(len) <= expected.size else {
                    throw hostile("more data than the \(expected.size) bytes declared")
                }
                guard archive_write_data_block(disk, buf, len, offset) >= ARCHIVE_WARN else {
                    throw hostile("cannot write: \(archiveError(disk))")
                }
            }
            guard archive_write_finish_entry(disk) >= ARCHIVE_WARN else { throw hostile("cannot finish: \(archiveError(disk))") }
        }
        let rc = archive_read_next_header(a, &entry)
        guard rc == ARCHIVE_EOF else {
            let extra = entry.map { String(cString: archive_entry_pathname($0)) } ?? "?"
            throw SandboxError("refusing the archive: it holds \(extra.prefix(300)), which its index does not list")
        }
        // Directory modes and times are applied at close, after their contents.
        guard archive_write_close(disk) >= ARCHIVE_WARN else { throw SandboxError("import: finishing extraction: \(archiveError(disk))") }
    }

    /// The sandbox's own parts around what was extracted: the manifest under
    /// its (new) name, scratch directories, and an audit line for the import.
    static func finish(store: SandboxStore, staging: String, name: String, index: ExportFormat.Index, file: String,
                       digest: String, workflow: String, start: Double,
                       attach: (SandboxManifest) throws(SandboxError) -> WorkerGitState.Attached?) throws(SandboxError) -> ImportSummary {
        let p = SandboxPaths(dir: staging)
        guard let bytes = try FileSys.read(p.manifest) else { throw SandboxError("refusing the archive: no manifest.json") }
        var m = try SandboxManifest.parse(bytes, file: "manifest.json in \(file)")
        guard m.name == index.sandbox else {
            throw SandboxError("refusing the archive: its manifest names \(m.name), its index \(index.sandbox)")
        }
        // The chain as exported (before the import line is added).
        let verification = try AuditLog(path: p.audit).verify(head: (m.auditSeq, m.auditHash))
        let exported = m
        let original = m.name
        m.name = name
        m.externalWorkdir = nil
        if m.status == .running { m.status = .interrupted }
        var imported: [(String, JSON)] = [("file", .string(file)), ("sha256", .string(digest)), ("name", .string(original)),
                                          ("at", .string(Clock.iso())), ("audit_intact", .bool(verification.ok))]
        if let r = m.repository {
            imported.append(("repository", .object([("path", .string(r.path)), ("worker", .string(r.worker)),
                                                    ("base", r.base.map(JSON.string) ?? .null)])))
            m.repository = nil
        }
        // The only step that writes outside the staging directory; the caller undoes it if a later one fails.
        var directories = [p.rootChanges, p.upper, p.work, p.home, p.results]
        if let a = try attach(exported) {
            m.repository = a.repository
            m.externalWorkdir = a.worktree
        } else {
            // A version 1 archive of a worker's sandbox carries only the files: they become its own workdir.
            directories.append(p.managedWorkdir)
        }
        m.importedFrom = .object(imported)
        for d in directories { try FileSys.makeDirectory(d, mode: 0o755) }
        try FileSys.makeDirectory(p.checkpoints, mode: 0o700)
        let lfd = open(p.lock, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        if lfd >= 0 { close(lfd) }
        let line = try AuditLog(path: p.audit).append(event: "import", sandbox: name, workflow: workflow, [
            ("file", .string(file)), ("sha256", .string(digest)), ("from", .string(original)),
            ("entries", .int(Int64(index.entries.count))), ("bytes", .int(Int64(clamping: index.totalBytes))),
            ("audit_intact", .bool(verification.ok)),
        ])
        m.apply(line)
        try writeFileAtomically(p.manifest, m.rendered(), mode: 0o644)
        FileSys.syncFileSystem(of: staging)
        return ImportSummary(name: name, entries: index.entries.count, bytes: index.totalBytes, sha256: digest,
                             seconds: Clock.monotonic() - start, auditIntact: verification.ok, auditProblems: verification.problems)
    }
}
