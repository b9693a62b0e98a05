import Glibc

/// Keeps a writable workdir's `.git` from becoming a way to run code on the
/// host later, beyond the profile's protected paths (`.git/hooks`, `.git/config`):
///
/// - `.git` is bound onto itself, so it is a mount point: it cannot be renamed
///   away or removed and replaced by a `.git` with planted hooks;
/// - a missing `.git/hooks` is created before launch, so it can be protected;
/// - `.git/commondir` redirects git to another config and hooks. It cannot be
///   protected by a mount without changing git's behaviour when absent, so it
///   is checked after the run: one that appeared is moved into
///   `.git/sandboxd-quarantine/` and reported.
public struct GitGuard: Sendable, Equatable {
    /// Host path of the workdir's `.git` directory.
    public var gitDir: String
    /// Whether `.git/commondir` existed at launch (then it is the user's own).
    public var hadCommondir: Bool

    /// The guard for `workdir`, or nil when it has no `.git` directory.
    static func prepare(workdir: String) -> GitGuard? {
        let git = workdir + "/.git"
        guard let st = lstatPath(git), (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
        let hooks = git + "/hooks"
        if lstatPath(hooks) == nil, mkdir(hooks, 0o755) == 0 {
            _ = chown(hooks, st.st_uid, st.st_gid)
        }
        return GitGuard(gitDir: git, hadCommondir: lstatPath(git + "/commondir") != nil)
    }

    /// After the run: quarantine a `commondir` the sandbox created. Returns a warning, if any.
    public func verify() -> String? {
        let planted = gitDir + "/commondir"
        guard !hadCommondir, lstatPath(planted) != nil else { return nil }
        let quarantine = gitDir + "/sandboxd-quarantine"
        mkdir(quarantine, 0o700)
        let dest = "\(quarantine)/commondir.\(Int(monotonicSeconds() * 1000))"
        if rename(planted, dest) == 0 {
            return "the sandbox created \(planted), which would point git on the host at another configuration; moved to \(dest)"
        }
        return "the sandbox created \(planted), which would point git on the host at another configuration, and it could not be moved (\(errnoString())): remove it before running git there"
    }
}
