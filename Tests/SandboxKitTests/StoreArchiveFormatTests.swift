import Testing
@testable import SandboxExt
import SandboxKit

@Suite("Store: export format (index checks, digest trailer)")
struct StoreArchiveFormatTests {
    typealias E = ExportFormat.Entry

    func index(_ entries: [E], total: UInt64? = nil, sandbox: String = "box") -> [UInt8] {
        let all = [E(path: "manifest.json", kind: .file, size: 10, mode: 0o644)] + entries
        let sum = all.reduce(UInt64(0)) { $0 + $1.size }
        return ExportFormat.Index(sandbox: sandbox, created: "c", totalBytes: total ?? sum, entries: all).json.bytes()
    }

    func refused(_ entries: [E], total: UInt64? = nil, cap: UInt64 = 1 << 30) -> String? {
        do {
            _ = try ExportFormat.parseIndex(index(entries, total: total), maximumBytes: cap)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func aNormalIndexPasses() throws {
        let ok: [E] = [
            .init(path: "audit.jsonl", kind: .file, size: 5, mode: 0o600),
            .init(path: "plan.md", kind: .file, size: 5, mode: 0o444),
            .init(path: "root/upper", kind: .directory, size: 0, mode: 0o755),
            .init(path: "root/upper/usr", kind: .directory, size: 0, mode: 0o755),
            .init(path: "root/upper/usr/bin", kind: .directory, size: 0, mode: 0o755),
            .init(path: "root/upper/usr/bin/python", kind: .symlink, size: 0, mode: 0o777, link: "python3"),
            .init(path: "root/upper/usr/bin/editor", kind: .symlink, size: 0, mode: 0o777, link: "/etc/alternatives/editor"),
            .init(path: "root/upper/usr/bin/up", kind: .symlink, size: 0, mode: 0o777, link: "../../etc/x"),
            .init(path: "root/upper/usr/bin/gone", kind: .whiteout, size: 0, mode: 0),
            .init(path: "root/upper/usr/bin/tool", kind: .file, size: 100, mode: 0o755),
            .init(path: "root/upper/usr/bin/tool2", kind: .hardlink, size: 0, mode: 0o755, link: "root/upper/usr/bin/tool"),
            .init(path: "home", kind: .directory, size: 0, mode: 0o700),
            .init(path: "home/.venv", kind: .directory, size: 0, mode: 0o755),
            .init(path: "home/.venv/python", kind: .symlink, size: 0, mode: 0o777, link: "/usr/bin/python3"),
            .init(path: "home/.venv/rel", kind: .symlink, size: 0, mode: 0o777, link: "../x"),
            .init(path: "home/fifo", kind: .fifo, size: 0, mode: 0o600),
            .init(path: "workdir", kind: .directory, size: 0, mode: 0o2775),
            .init(path: "results", kind: .directory, size: 0, mode: 0o755),
        ]
        let i = try ExportFormat.parseIndex(index(ok), maximumBytes: 1 << 30)
        #expect(i.entries.count == ok.count + 1)
        #expect(i.totalBytes == 120)
        #expect(i.sandbox == "box")
    }

    @Test func hostileIndexesAreRefused() {
        let areas: [E] = [.init(path: "home", kind: .directory, size: 0, mode: 0o700)]
        let cases: [(String, [E], String)] = [
            ("absolute", areas + [.init(path: "/etc/passwd", kind: .file, size: 1, mode: 0o644)], "absolute path"),
            ("dotdot", areas + [.init(path: "home/../../x", kind: .file, size: 1, mode: 0o644)], "'..'"),
            ("outside", [.init(path: "etc/passwd", kind: .file, size: 1, mode: 0o644)], "outside what an export holds"),
            ("setuid", areas + [.init(path: "home/su", kind: .file, size: 1, mode: 0o4755)], "setuid"),
            ("setgid", areas + [.init(path: "home/sg", kind: .file, size: 1, mode: 0o2755)], "setgid"),
            ("device", areas + [.init(path: "home/sda", kind: .whiteout, size: 0, mode: 0o600)], "device node"),
            ("symlink escape", areas + [.init(path: "home/l", kind: .symlink, size: 0, mode: 0o777, link: "../../etc/shadow")], "points out of the sandbox"),
            ("symlink escape from upper", [.init(path: "root/upper", kind: .directory, size: 0, mode: 0o755),
                                           .init(path: "root/upper/usr", kind: .directory, size: 0, mode: 0o755),
                                           .init(path: "root/upper/usr/l", kind: .symlink, size: 0, mode: 0o777, link: "../../x")], "points out"),
            ("through a symlink", areas + [.init(path: "home/l", kind: .symlink, size: 0, mode: 0o777, link: "/etc"),
                                           .init(path: "home/l/passwd", kind: .file, size: 1, mode: 0o644)], "through a link"),
            ("missing parent", areas + [.init(path: "home/a/b", kind: .file, size: 1, mode: 0o644)], "not in the archive before it"),
            ("hard link out", areas + [.init(path: "home/h", kind: .hardlink, size: 0, mode: 0o644, link: "/etc/shadow")], "hard link"),
            ("duplicate", areas + [.init(path: "home", kind: .directory, size: 0, mode: 0o700)], "appears twice"),
            ("empty component", areas + [.init(path: "home//x", kind: .file, size: 1, mode: 0o644)], "empty or '.'"),
        ]
        for (name, entries, expected) in cases {
            let message = refused(entries)
            #expect(message?.contains(expected) == true, "\(name): \(message ?? "accepted")")
            #expect(message?.hasPrefix("refusing the archive") == true, "\(name)")
        }
    }

    @Test func sizesAreCapped() {
        let big: [E] = [.init(path: "home", kind: .directory, size: 0, mode: 0o700),
                        .init(path: "home/big", kind: .file, size: 1 << 40, mode: 0o644)]
        #expect(refused(big)?.contains("cap") == true)
        let small: [E] = [.init(path: "home", kind: .directory, size: 0, mode: 0o700),
                          .init(path: "home/f", kind: .file, size: 100, mode: 0o644)]
        #expect(refused(small, total: 50)?.contains("not the 50 declared") == true)
        #expect(refused(small, cap: 50)?.contains("cap") == true)
    }

    @Test func trailerRoundTrip() {
        let d = SHA256.hash(Array("abc".utf8))
        let t = ExportFormat.trailer(digest: d, length: 123_456_789_012)
        #expect(t.count == ExportFormat.trailerSize)
        let back = ExportFormat.parseTrailer(t)
        #expect(back?.digest == d && back?.length == 123_456_789_012)
        var bad = t
        bad[0] ^= 1
        #expect(ExportFormat.parseTrailer(bad) == nil)
    }

    /// The archive digest (nettle, SHA-NI) agrees with the portable SHA-256.
    @Test func archiveDigestMatchesPortableSHA256() {
        #expect(ArchiveDigest.implementation == "nettle")
        var rng = SystemRandomNumberGenerator()
        for size in [0, 1, 63, 64, 65, 1000, 100_000] {
            let data = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let d = ArchiveDigest()
            data.withUnsafeBytes { buf in
                let half = buf.count / 2
                d.update(UnsafeRawBufferPointer(rebasing: buf[0..<half]))
                d.update(UnsafeRawBufferPointer(rebasing: buf[half...]))
            }
            #expect(d.finalize() == SHA256.hash(data), "size \(size)")
        }
    }
}
