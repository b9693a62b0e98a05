import CGit2
import Glibc

/// Where the lock ref is shared between machines. `fetch` returns the remote's current lock
/// commit (objects copied in); `push` publishes `commit` only as a fast-forward from `expected`
/// and returns false when someone else moved the ref first.
protocol LockRemote {
    func fetch() throws -> GitOID?
    func push(_ commit: GitOID, expected: GitOID?) throws -> Bool
}

/// A remote named in the repository's config: a local path or `file://` URL is accessed directly
/// (libgit2's local transport does not compare-and-swap on push), anything else through libgit2's
/// smart transports, where git-receive-pack checks the old value under the ref's lock.
func makeLockRemote(repo: GitRepo, name: String) throws -> LockRemote {
    var remote: OpaquePointer?
    let rc = git_remote_lookup(&remote, repo.ptr, name)
    if rc == GIT_ENOTFOUND.rawValue { throw SandboxError("no remote named '\(name)' in \(repo.gitDir)") }
    try gitCheck(rc, "cannot read remote \(name)")
    defer { git_remote_free(remote) }
    let url = git_remote_url(remote).map { String(cString: $0) } ?? ""
    if let path = localPath(ofURL: url, relativeTo: repo.workdir ?? repo.gitDir) {
        return LocalLockRemote(local: repo, path: path)
    }
    return SmartLockRemote(local: repo, name: name)
}

/// The path a remote URL names when it is local: `file://PATH`, `/abs`, `./rel`, `../rel`, or a
/// bare relative path without a scp-like `host:` part.
func localPath(ofURL url: String, relativeTo base: String) -> String? {
    if url.hasPrefix("file://") { return String(url.dropFirst(7)) }
    if url.contains("://") { return nil }
    if url.hasPrefix("/") { return url }
    if let colon = url.firstIndex(of: ":") {
        let slash = url.firstIndex(of: "/")
        if slash == nil || colon < slash! { return nil }  // host:path (ssh)
    }
    return base + "/" + url
}

/// A remote repository on this file system, opened directly.
struct LocalLockRemote: LockRemote {
    let local: GitRepo
    let path: String

    func open() throws -> GitRepo {
        guard WorkspaceSys.exists(path) else { throw SandboxError("lock remote \(path) does not exist") }
        return try GitRepo.open(path)
    }

    func fetch() throws -> GitOID? {
        let remote = try open()
        guard let tip = try remote.refTarget(LockStore.ref) else { return nil }
        try GitObjects.copyMissing(from: try remote.odb(), to: try local.odb(), roots: [tip])
        return tip
    }

    func push(_ commit: GitOID, expected: GitOID?) throws -> Bool {
        let remote = try open()
        try GitObjects.copyMissing(from: try local.odb(), to: try remote.odb(), roots: [commit])
        return try remote.compareAndSwap(LockStore.ref, to: commit, expected: expected,
                                         log: "sandboxd: lock change pushed") == .updated
    }
}

/// State shared with libgit2's C callbacks through their payload pointer.
final class RemoteCallbackState {
    var credentialAttempts = 0
    var rejections: [String] = []
}

func initRemoteCallbacks(_ cbs: inout git_remote_callbacks, _ state: RemoteCallbackState) {
    git_remote_init_callbacks(&cbs, UInt32(GIT_REMOTE_CALLBACKS_VERSION))
    cbs.payload = Unmanaged.passUnretained(state).toOpaque()
    cbs.credentials = { out, _, user, allowed, payload in
        guard let payload else { return -1 }
        let state = Unmanaged<RemoteCallbackState>.fromOpaque(payload).takeUnretainedValue()
        state.credentialAttempts += 1
        if state.credentialAttempts > 3 { return -1 }
        if allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 {
            if let user { return git_credential_ssh_key_from_agent(out, user) }
            return "git".withCString { git_credential_ssh_key_from_agent(out, $0) }
        }
        if allowed & GIT_CREDENTIAL_DEFAULT.rawValue != 0 {
            return git_credential_default_new(out)
        }
        return GIT_PASSTHROUGH.rawValue
    }
    cbs.push_update_reference = { refname, status, payload in
        if let status, let payload {
            let state = Unmanaged<RemoteCallbackState>.fromOpaque(payload).takeUnretainedValue()
            state.rejections.append("\(refname.map { String(cString: $0) } ?? "?"): \(String(cString: status))")
        }
        return 0
    }
}

/// A remote reached over a network transport (ssh, https, git).
struct SmartLockRemote: LockRemote {
    let local: GitRepo
    let name: String

    var trackingRef: String { "refs/sandboxd/remotes/\(name)/locks" }
    /// The local ref a push sends: one per process, so concurrent pushers never send each other's commit.
    var outgoingRef: String { "refs/sandboxd/outgoing/\(name)/\(getpid())" }

    func withRemote<R>(_ body: (OpaquePointer, inout git_remote_callbacks) throws -> R) throws -> R {
        var remote: OpaquePointer?
        try gitCheck(git_remote_lookup(&remote, local.ptr, name), "cannot read remote \(name)")
        defer { git_remote_free(remote) }
        let state = RemoteCallbackState()
        return try withExtendedLifetime(state) {
            var cbs = git_remote_callbacks()
            initRemoteCallbacks(&cbs, state)
            return try body(remote!, &cbs)
        }
    }

    func fetch() throws -> GitOID? {
        try withRemote { remote, cbs in
            try gitCheck(git_remote_connect(remote, GIT_DIRECTION_FETCH, &cbs, nil, nil), "cannot reach remote \(name)")
            defer { git_remote_disconnect(remote) }
            var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
            var count = 0
            try gitCheck(git_remote_ls(&heads, &count, remote), "cannot list remote \(name)")
            var tip: GitOID?
            for i in 0..<count {
                guard let h = heads?[i] else { continue }
                if String(cString: h.pointee.name) == LockStore.ref { tip = GitOID(h.pointee.oid) }
            }
            guard let tip else { return nil }
            if !(try local.hasObject(tip)) {
                var fo = git_fetch_options()
                git_fetch_options_init(&fo, UInt32(GIT_FETCH_OPTIONS_VERSION))
                fo.callbacks = cbs
                fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE
                try withStrArray(["+\(LockStore.ref):\(trackingRef)"]) { specs in
                    try gitCheck(git_remote_download(remote, specs, &fo), "cannot fetch \(LockStore.ref) from \(name)")
                }
                (try local.odb()).refresh()
            }
            var raw = tip.raw
            var ref: OpaquePointer?
            _ = git_reference_create(&ref, local.ptr, trackingRef, &raw, 1, "sandboxd: fetch lock ref")
            git_reference_free(ref)
            return tip
        }
    }

    func push(_ commit: GitOID, expected: GitOID?) throws -> Bool {
        var raw = commit.raw
        var ref: OpaquePointer?
        try gitCheck(git_reference_create(&ref, local.ptr, outgoingRef, &raw, 1, "sandboxd: lock change to push"),
                     "cannot write \(outgoingRef)")
        git_reference_free(ref)
        defer {
            var out: OpaquePointer?
            if git_reference_lookup(&out, local.ptr, outgoingRef) == 0 { git_reference_delete(out) }
            git_reference_free(out)
        }
        let (rc, rejections, message): (Int32, [String], String) = try withRemote { remote, cbs in
            var po = git_push_options()
            git_push_options_init(&po, UInt32(GIT_PUSH_OPTIONS_VERSION))
            po.callbacks = cbs
            let state = Unmanaged<RemoteCallbackState>.fromOpaque(cbs.payload).takeUnretainedValue()
            // No '+': the push is fast-forward only; the server compares the old value under its lock.
            let rc = withStrArray(["\(outgoingRef):\(LockStore.ref)"]) { specs in git_remote_push(remote, specs, &po) }
            return (rc, state.rejections, rc < 0 ? gitLastErrorMessage(rc) : "")
        }
        if rc == 0 && rejections.isEmpty { return true }
        // Rejected, or failed: if the remote's ref moved from what we built on, someone else won.
        if try fetch() != expected { return false }
        if !rejections.isEmpty { throw SandboxError("push of \(LockStore.ref) to \(name) rejected: \(rejections.joined(separator: "; "))") }
        throw SandboxError("cannot push \(LockStore.ref) to \(name): \(message)")
    }
}
