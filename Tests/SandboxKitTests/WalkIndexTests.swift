import Foundation
import Glibc
import Testing
@testable import SandboxKit

/// The blocked-path walk's index: unchanged directories are answered from it,
/// changed ones are read, and an index that cannot be trusted is not used.
@Suite("Blocked-path walk index")
struct WalkIndexTests {
    static let patterns = [".env*", "*.pem"]

    /// A tree of `dirs` directories of ten files each, with one secret.
    func makeTree(_ root: String, dirs: Int = 12) throws {
        for d in 0..<dirs {
            for f in 0..<10 { try writeTestFile("\(root)/d\(d)/sub/f\(f).c") }
        }
        try writeTestFile("\(root)/d3/sub/.env")
    }

    /// settle 0: every directory is recorded, however recently it changed.
    func index(_ dir: String, settle: Int64 = 0) -> WalkIndex {
        var ix = WalkIndex(directory: CacheDirectory(path: dir + "/cache"))
        ix.settleNanoseconds = settle
        ix.minimumEntries = 0
        return ix
    }

    /// A tree under `dir`, walked once into its index.
    func indexedTree(_ dir: String) throws -> (root: String, index: WalkIndex) {
        let root = dir + "/work"
        try makeTree(root)
        let ix = index(dir)
        _ = try ix.walk(root, patterns: Self.patterns)
        return (root, ix)
    }

    func hits(_ w: WalkIndex.Walk) -> [String] {
        w.hits.map { "\(Character(Unicode.Scalar($0.type))) \(String(decoding: $0.path, as: UTF8.self))" }.sorted()
    }

    @Test func unchangedDirectoriesAreAnsweredAndChangedOnesRead() throws {
        try withTempDir { dir in
            let root = dir + "/work"
            try makeTree(root)
            let ix = index(dir)
            let first = try ix.walk(root, patterns: Self.patterns)
            #expect(first.directoriesRead == 25 && first.directoriesReused == 0, "root, 12 dN, 12 dN/sub")
            #expect(hits(first) == ["f d3/sub/.env"])
            let second = try ix.walk(root, patterns: Self.patterns)
            #expect(second.directoriesRead == 0 && second.directoriesReused == 25)
            #expect(hits(second) == hits(first) && second.visited == first.visited)

            // Coarse timestamps: make sure the change lands in a later tick than the read.
            usleep(20_000)
            try writeTestFile(root + "/d7/sub/key.pem")
            try writeTestFile(root + "/d9/new/deeper/.env.local")
            let third = try ix.walk(root, patterns: Self.patterns)
            #expect(hits(third) == ["f d3/sub/.env", "f d7/sub/key.pem", "f d9/new/deeper/.env.local"])
            #expect(third.directoriesRead == 4, "d7/sub, d9, and the new d9/new and d9/new/deeper")
            #expect(third.directoriesReused == 23)

            // A removed secret is gone from the answer too.
            usleep(20_000)
            unlink(root + "/d3/sub/.env")
            let fourth = try ix.walk(root, patterns: Self.patterns)
            #expect(hits(fourth) == ["f d7/sub/key.pem", "f d9/new/deeper/.env.local"])
            #expect(fourth.directoriesRead == 1)
        }
    }

    @Test func aDirectorySwappedForASymlinkIsNotFollowed() throws {
        try withTempDir { dir in
            let (root, ix) = try indexedTree(dir)
            try writeTestFile(dir + "/outside/.env")
            usleep(20_000)
            try FileManager.default.removeItem(atPath: root + "/d5")
            #expect(symlink(dir + "/outside", root + "/d5") == 0)
            let after = try ix.walk(root, patterns: Self.patterns)
            #expect(hits(after) == ["f d3/sub/.env"], "the walk never follows a symlink, indexed or not")
            #expect(after.directoriesRead == 1, "only the root, whose entry changed")
        }
    }

    @Test func anIndexThatCannotBeTrustedIsNotUsed() throws {
        try withTempDir { dir in
            let root = dir + "/work"
            try makeTree(root)
            let ix = index(dir)
            let truth = hits(try ix.walk(root, patterns: Self.patterns))
            let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/cache").filter { $0.hasPrefix("walk-") }
            #expect(files.count == 1)
            let file = dir + "/cache/" + files[0]

            // One flipped byte (a torn write, a disk error): the checksum fails, everything is read.
            var bytes = try #require(FileManager.default.contents(atPath: file))
            bytes[bytes.count - 2] ^= 0x01
            try bytes.write(to: URL(fileURLWithPath: file))
            let damaged = try ix.walk(root, patterns: Self.patterns)
            #expect(damaged.directoriesReused == 0 && hits(damaged) == truth)

            // Rewritten whole by that walk; now writable by others: not read.
            #expect(try ix.walk(root, patterns: Self.patterns).directoriesReused == 25)
            chmod(file, 0o622)
            #expect(try ix.walk(root, patterns: Self.patterns).directoriesReused == 0)
            chmod(file, 0o600)
            chmod(dir + "/cache", 0o777)
            #expect(try ix.walk(root, patterns: Self.patterns).directoriesReused == 0)
            chmod(dir + "/cache", 0o700)

            // Another pattern list has its own entry.
            let other = try ix.walk(root, patterns: ["*.c"])
            #expect(other.directoriesReused == 0 && other.hits.count == 120)
        }
    }

    @Test func recentlyChangedDirectoriesAreNotRecorded() throws {
        try withTempDir { dir in
            let root = dir + "/work"
            try makeTree(root)
            // Everything was made just now: within a minute's settle, nothing may be trusted later.
            let ix = index(dir, settle: 60_000_000_000)
            _ = try ix.walk(root, patterns: Self.patterns)
            let again = try ix.walk(root, patterns: Self.patterns)
            #expect(again.directoriesReused == 0 && again.directoriesRead == 25)
        }
    }

    /// A new entry prunes other builds' entries once they are an hour old;
    /// a recent one stays (two installed builds used in turn would otherwise
    /// evict each other's and walk in full every time).
    @Test func aNewEntryPrunesOtherBuildsOldEntriesOnly() throws {
        try withTempDir { dir in
            mkdir(dir + "/cache", 0o700)
            let old = dir + "/cache/walk-0000000000000001.idx", recent = dir + "/cache/walk-0000000000000002.idx"
            for f in [old, recent] { try Data("sandboxd-walk 1|build someotherbuild|x\0".utf8).write(to: URL(fileURLWithPath: f)) }
            var times = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
            #expect(utimes(old, &times) == 0)
            _ = try indexedTree(dir)
            let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/cache").filter { $0.hasPrefix("walk-") }
            #expect(access(old, F_OK) != 0, "\(files)")
            #expect(access(recent, F_OK) == 0, "\(files)")
            #expect(files.count == 2, "the recent entry and this build's new one: \(files)")
        }
    }

    @Test func smallTreesWriteNoIndex() throws {
        try withTempDir { dir in
            let root = dir + "/work"
            try makeTree(root)
            var ix = index(dir)
            ix.minimumEntries = 1_000
            _ = try ix.walk(root, patterns: Self.patterns)
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/cache")) ?? []
            #expect(files.filter { $0.hasPrefix("walk-") }.isEmpty)
        }
    }

    @Test func aWalkThatFailsIsAnErrorNotAnEmptyAnswer() throws {
        try withTempDir { dir in
            #expect(throws: SandboxError.self) { try index(dir).walk(dir + "/missing", patterns: Self.patterns) }
            let b = BlockedPaths(binds: [(dir, dir)], walkRoots: [dir + "/missing"], workdir: dir, hostHome: "/nonexistent")
            #expect(throws: SandboxError.self) { try b.resolve(blocked: ["**/.env*"], hide: []) }
        }
    }

    /// The index trusts ctime, not mtime: restoring a directory's mtime after
    /// adding a secret (as `rsync -a`, `tar x` or a hostile process could) does not hide it.
    @Test func aRestoredMtimeDoesNotHideAChange() throws {
        try withTempDir { dir in
            let (root, ix) = try indexedTree(dir)
            let d = root + "/d2/sub"
            let before = try #require(lstatPath(d))
            usleep(20_000)
            try writeTestFile(d + "/.env.restored")
            var times = [before.st_atim, before.st_mtim]
            #expect(utimensat(AT_FDCWD, d, &times, 0) == 0)
            #expect(lstatPath(d)?.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
            let after = try ix.walk(root, patterns: Self.patterns)
            #expect(hits(after).contains("f d2/sub/.env.restored"))
            #expect(after.directoriesRead == 1)
        }
    }

    @Test func anUnchangedTreeDoesNotRewriteItsIndex() throws {
        try withTempDir { dir in
            let (root, ix) = try indexedTree(dir)
            let name = try #require(FileManager.default.contentsOfDirectory(atPath: dir + "/cache").first { $0.hasPrefix("walk-") })
            let first = try #require(lstatPath(dir + "/cache/" + name))
            _ = try ix.walk(root, patterns: Self.patterns)
            let second = try #require(lstatPath(dir + "/cache/" + name))
            #expect(first.st_ino == second.st_ino, "an atomic rewrite would be a new inode")
        }
    }

    @Test func aCacheInsideAWritableTreeIsExposed() throws {
        try withTempDir { dir in
            try writeTestFile(dir + "/work/x")
            let work = try #require(resolvedPath(dir + "/work"))
            #expect(CacheDirectory(path: dir + "/work/.cache/sandboxd").isExposed(to: [work]), "not made yet")
            #expect(symlink(dir + "/work", dir + "/alias") == 0)
            #expect(CacheDirectory(path: dir + "/alias/c").isExposed(to: [work]), "reached through a symlink")
            #expect(!CacheDirectory(path: dir + "/cache").isExposed(to: [work]))
            #expect(!CacheDirectory(path: dir + "/workcache").isExposed(to: [work]))
        }
    }
}
