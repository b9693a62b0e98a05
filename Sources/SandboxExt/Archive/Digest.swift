import Glibc

/// SHA-256 for archive digests: gigabytes go through it, so it uses
/// nettle's implementation (SHA-NI where the CPU has it: ~6x the portable
/// code here) from libnettle, which libarchive already loaded into this
/// process; without it, SandboxKit's portable SHA256.
final class ArchiveDigest {
    private typealias Init = @convention(c) (UnsafeMutableRawPointer) -> Void
    private typealias Update = @convention(c) (UnsafeMutableRawPointer, Int, UnsafeRawPointer) -> Void
    private typealias Digest = @convention(c) (UnsafeMutableRawPointer, Int, UnsafeMutableRawPointer) -> Void

    private struct Nettle: @unchecked Sendable {
        let initialize: Init
        let update: Update
        let digest: Digest
    }

    private static let nettle: Nettle? = {
        let handle = dlopen("libnettle.so.8", RTLD_NOW | RTLD_NOLOAD) ?? dlopen("libnettle.so.8", RTLD_NOW)
        guard let handle, let i = dlsym(handle, "nettle_sha256_init"), let u = dlsym(handle, "nettle_sha256_update"),
              let d = dlsym(handle, "nettle_sha256_digest") else { return nil }
        return Nettle(initialize: unsafeBitCast(i, to: Init.self), update: unsafeBitCast(u, to: Update.self),
                      digest: unsafeBitCast(d, to: Digest.self))
    }()

    /// Which implementation is in use (for benchmarks and reports).
    static var implementation: String { nettle == nil ? "portable" : "nettle" }

    private var context: UnsafeMutableRawPointer?
    private var portable = SHA256()

    init() {
        if let n = ArchiveDigest.nettle {
            // struct sha256_ctx is 112 bytes; leave room.
            let ctx = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 16)
            n.initialize(ctx)
            context = ctx
        }
    }

    deinit { context?.deallocate() }

    func update(_ buffer: UnsafeRawBufferPointer) {
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        if let n = ArchiveDigest.nettle, let ctx = context {
            n.update(ctx, buffer.count, base)
        } else {
            portable.update(buffer)
        }
    }

    func finalize() -> [UInt8] {
        if let n = ArchiveDigest.nettle, let ctx = context {
            var out = [UInt8](repeating: 0, count: 32)
            out.withUnsafeMutableBytes { n.digest(ctx, 32, $0.baseAddress!) }
            return out
        }
        return portable.finalize()
    }
}
