import CSandbox
import Glibc

/// A network namespace created on a helper thread while sandboxd loads the
/// profile and plans, so that the kernel's share of clone3 overlaps with Swift
/// work (root only; netns.c says why, and why a plan that keeps a network
/// capability must not use it). One launch takes it; `release` frees it.
public final class PreparedNetwork: @unchecked Sendable {
    private var handle: OpaquePointer?

    /// NET_BIND_SERVICE, NET_BROADCAST, NET_ADMIN, NET_RAW: rights a sandbox
    /// would hold over a namespace it owns, and not over this one.
    static let networkCapabilities: UInt64 = 0b1111 << 10

    private init(_ handle: OpaquePointer) { self.handle = handle }

    /// Starts preparing one; nil when sandboxd is not root (it could not).
    public static func start() -> PreparedNetwork? {
        guard geteuid() == 0, let handle = sbx_netns_prepare() else { return nil }
        return PreparedNetwork(handle)
    }

    /// Whether `plan` can start in it: loopback networking, and no network
    /// capability that would work only in a namespace the sandbox owns.
    static func suits(_ plan: LaunchPlan) -> Bool {
        plan.loopback && plan.capabilityMask & networkCapabilities == 0
    }

    /// Waits for the helper: the namespace and sandboxd's own, or nil if the
    /// namespace could not be made (the launch then creates one at clone).
    func descriptors() -> (netns: Int32, home: Int32)? {
        guard let handle else { return nil }
        var fd: Int32 = -1, home: Int32 = -1
        return sbx_netns_wait(handle, &fd, &home) == 0 ? (fd, home) : nil
    }

    /// Closes the descriptors; the namespace lives on in the sandbox, if any.
    public func release() {
        if let handle { sbx_netns_release(handle) }
        handle = nil
    }

    deinit { release() }
}
