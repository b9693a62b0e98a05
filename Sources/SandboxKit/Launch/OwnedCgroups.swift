import CSandbox
import Glibc

/// A sandbox's cgroups and the janitor that removes them should sandboxd be
/// killed before it does.
final class OwnedCgroups {
    let set: CgroupSet
    private var janitor: sbx_janitor?

    private init(_ set: CgroupSet, janitor: sbx_janitor?) {
        self.set = set
        self.janitor = janitor
    }

    /// Starts the janitor for the groups, then makes them and writes
    /// `limits`: a SIGKILL at any point leaves nothing behind, and on failure
    /// nothing is. If the janitor cannot start, the sandbox still runs, but a
    /// SIGKILL of sandboxd would leave the groups behind.
    static func make(name: String, layout: CgroupSet.Layout, limits: Profile.Limits) throws(SandboxError) -> OwnedCgroups {
        let cpu = limits.cpus > 0
        var janitor = startJanitor(try CgroupSet.directories(name: name, layout: layout, cpu: cpu))
        let set: CgroupSet
        do {
            set = try CgroupSet.make(name: name, layout: layout, cpu: cpu)
        } catch {
            if janitor != nil { sbx_janitor_dismiss(&janitor!) }
            throw error
        }
        let owned = OwnedCgroups(set, janitor: janitor)
        do { try set.apply(limits) } catch { owned.remove(); throw error }
        return owned
    }

    /// Removes the groups (the sandbox's processes must be gone) and dismisses
    /// the janitor. `meanwhile` runs while the dismissed janitor exits (waking
    /// it costs a cross-core wake-up that work here hides); it is reaped after.
    func remove(meanwhile: () -> Void = {}) {
        set.remove()
        if janitor != nil { sbx_janitor_release(&janitor!) }
        meanwhile()
        dismissJanitor()
    }

    /// Hands the janitor the groups' removal and `mountNamespace` (if >= 0)
    /// to close, and returns without waiting for it (Supervisor.Teardown).
    /// Returns false, doing nothing, if there is no janitor. Sets
    /// `mountNamespace` to -1 once it is the janitor's; if it could not be
    /// handed over, it stays the caller's to close.
    func handOff(mountNamespace: inout Int32) -> Bool {
        guard janitor != nil else { return false }
        set.closeJoinFDs()
        if sbx_janitor_hand_off(&janitor!, mountNamespace) == 0 { mountNamespace = -1 } // closed: the janitor's now
        janitor = nil
        return true
    }

    private func dismissJanitor() {
        if janitor != nil { sbx_janitor_dismiss(&janitor!) }
        janitor = nil
    }

    /// Starts the janitor (it copies the paths).
    private static func startJanitor(_ dirs: [String]) -> sbx_janitor? {
        var janitor = sbx_janitor()
        var cdirs = dirs.map { strdup($0) } + [nil]
        defer { cdirs.forEach { free($0) } }
        let rc = cdirs.withUnsafeMutableBufferPointer { buf in
            UnsafeRawPointer(buf.baseAddress!).withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) {
                sbx_janitor_start($0, &janitor)
            }
        }
        return rc == 0 ? janitor : nil
    }
}
