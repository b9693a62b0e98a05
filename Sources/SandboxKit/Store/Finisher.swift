import CSandbox
import Glibc

/// The end of a named sandbox's run, off sandboxd's critical path (and the
/// mount tree's teardown alone for a plain `exec` without cgroups, which has
/// no janitor to hand it to: `start(mountNamespace:)`).
///
/// A resume's end costs a disk flush or two: overlayfs syncs its upper
/// layers' filesystem when the sandbox's mount tree goes, and the end record
/// (audit line and manifest) is fsynced before the manifest is renamed into
/// place. sandboxd used to wait for both before answering. A finisher
/// (CSandbox release.c) is a small process that takes over the sandbox's
/// mount namespace, the records' descriptors and the sandbox's lock, does
/// that work in that order, and exits, which drops the lock. sandboxd
/// answers at once; the next command on the sandbox waits for the lock
/// (`SandboxLock.finishing`).
///
/// What this changes on a power cut in the finisher's millisecond: the run's
/// end may be lost, and the next session then marks the run interrupted, as
/// for any run the machine stopped. The order above keeps "recorded as ended"
/// meaning "its root changes are on disk". A SIGKILL changes nothing: the end
/// line is in the log before the finisher starts, and a session catches up
/// from the log.
enum Finisher {
    /// Hands the work over. true: the mount namespace, the batch's
    /// descriptors and the lock are the finisher's (this process's copies
    /// closed), and it commits `replacement`. false: nothing started; all of
    /// it is still the caller's. `direct`: this process exits right after
    /// (Supervisor.Teardown.afterReturn), so the finisher may be its child.
    static func start(mountNamespace: Int32, batch: DeferredSync, replacement: PendingReplacement,
                      lock: SandboxLock, direct: Bool) -> Bool {
        guard mountNamespace >= 0, lock.descriptor >= 0 else { return false }
        // Written before the finisher exists, so a waiter never sees the lock
        // held by a finished exec under its old name (and refuses).
        lock.record(SandboxLock.finishing)
        let fds = batch.pending
        let rc = fds.withUnsafeBufferPointer { buf in
            replacement.temporary.withCString { from in
                replacement.path.withCString { to in
                    var spec = sbx_finish(mntns_fd: mountNamespace, lock_fd: lock.descriptor,
                                          sync_fds: buf.baseAddress, n_sync: Int32(buf.count),
                                          rename_from: from, rename_to: to, direct: direct ? 1 : 0)
                    return sbx_finisher_start(&spec)
                }
            }
        }
        guard rc == 0 else { return false }
        batch.forget()
        lock.forget()
        return true
    }

    /// Hands over the mount namespace alone (a plain `exec` with no cgroups,
    /// so no janitor to take it; the process exits right after, so the
    /// finisher is its own child): true if the finisher took it (this
    /// process's copy closed), false if it is still the caller's.
    static func start(mountNamespace: Int32) -> Bool {
        guard mountNamespace >= 0 else { return false }
        var spec = sbx_finish(mntns_fd: mountNamespace, lock_fd: -1, sync_fds: nil, n_sync: 0, rename_from: nil, rename_to: nil,
                              direct: 1)
        return sbx_finisher_start(&spec) == 0
    }
}
