import Foundation
import Glibc
import SandboxKit
import Testing

/// export/import: an exact round trip, and hostile archives refused with nothing written.
@Suite("Persistence: export and import", .serialized)
struct PersistenceArchiveTests {
    static let populate = """
        set -e
        mkdir -p /usr/local/bin /opt/rt/empty-dir
        printf 'tool' > /usr/local/bin/t1
        chmod 751 /usr/local/bin/t1
        ln -s t1 /usr/local/bin/t1-link
        ln -s /etc/alternatives/editor /usr/local/bin/abs-link
        ln /usr/local/bin/t1 /usr/local/bin/t1-hard
        rm /etc/issue
        rm -rf /usr/share/doc/bash
        mkdir -p /usr/share/doc/bash
        echo new > /usr/share/doc/bash/README
        mkdir -p "$HOME/.cache"
        head -c 3000000 /dev/urandom > "$HOME/.cache/blob"
        chmod 600 "$HOME/.cache/blob"
        touch -d '2001-02-03 04:05:06.123456789' "$HOME/.cache/blob"
        mkfifo "$HOME/fifo"
        echo w > work.txt
        chown 1000:1000 work.txt
        chmod 640 work.txt
        mkdir -p sub/deeper
        ln -s ../work.txt sub/up-link
        touch -d '1999-01-01 00:00:00' sub/deeper sub
        echo r > "$SANDBOXD_RESULTS/r.txt"
        """

    @Test func roundTripPreservesTheTreeExactly() async throws {
        try await Persist.withHome("roundtrip") { home in
            try home.scratch.write("plan.md", "plan\n")
            var r = await home.run("create", "rt", "--plan", home.scratch.path + "/plan.md")
            try #require(r.exitCode == 0, "\(r)")
            r = await home.sh("rt", Self.populate)
            try #require(r.exitCode == 0, "\(r)")
            let before = PTree.sandboxState(home.dir("rt"))
            #expect(before["root/upper"]!.contains { $0.path == "etc/issue" && $0.type == S_IFCHR && $0.content == "rdev 0" })
            #expect(before["root/upper"]!.contains { $0.path == "usr/share/doc/bash" && $0.xattrs.contains { $0.hasPrefix("user.overlay.opaque=") } })
            #expect(before["workdir"]!.contains { $0.path == "work.txt" && $0.uid == 1000 && $0.mode == 0o640 })

            let archive = home.scratch.path + "/rt.sbx"
            r = await home.run("export", "rt", "-o", archive, "--json")
            try #require(r.exitCode == 0, "\(r)")
            let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect((summary?["bytes"] as? Int ?? 0) > 3_000_000)
            // A plain `tar --zstd` reads it too.
            let tar = await sbxRun(["/usr/bin/tar", "--zstd", "-tf", archive])
            #expect(tar.exitCode == 0 && tar.stdout.contains("home/.cache/blob"), "\(tar)")

            let other = Persist.Home(path: home.scratch.path + "/machine2", scratch: home.scratch)
            r = await other.run("import", archive)
            try #require(r.exitCode == 0, "\(r)")
            let after = PTree.sandboxState(other.dir("rt"))
            for (area, tree) in before {
                let d = PTree.diff(tree, after[area] ?? [])
                #expect(d.isEmpty, "\(area): \(d.joined(separator: "\n"))")
            }
            // Nothing of the export's machinery is left.
            #expect(other.entries() == ["rt"])
            #expect(!FileManager.default.fileExists(atPath: archive + ".tmp-\(r.pid)"))
            // And it runs: links, whiteout, opaque directory, ownership as seen inside.
            r = await other.sh("rt", "cat /usr/local/bin/t1-link; echo; test -e /etc/issue && echo issue || echo no-issue; ls /usr/share/doc/bash; stat -c %u:%a work.txt; cat sub/up-link")
            #expect(r.stdout == "tool\nno-issue\nREADME\n1000:640\nw\n", "\(r)")
        }
    }

    // MARK: Hostile archives

    /// Builds an archive from a JSON spec with Python's tarfile, the zstd CLI and a computed trailer,
    /// so each check can be reached with a valid digest.
    static let builder = #"""
    import sys, json, tarfile, hashlib, struct, subprocess, io, zlib
    out, spec = sys.argv[1], json.load(open(sys.argv[2]))
    name = spec.get("sandbox", "evil")
    manifest = json.dumps({"format": "sandboxd.sandbox", "version": 1, "name": name, "created": "c", "status": "idle",
        "profile": {"name": "worker", "source": "embedded:worker", "toml": ""}, "workdir": {"managed": "workdir"}, "runs": [],
        "repository": spec.get("repository")}).encode()
    for e in spec.get("entries", []):
        if "zlib" in e: e["raw"] = zlib.compress(e["zlib"].encode())
    base = [{"path": "manifest.json", "kind": "f", "data": manifest.decode(), "mode": 0o644},
            {"path": "audit.jsonl", "kind": "f", "data": "", "mode": 0o600},
            {"path": "root/upper", "kind": "d", "mode": 0o755}, {"path": "home", "kind": "d", "mode": 0o700},
            {"path": "workdir", "kind": "d", "mode": 0o755}, {"path": "results", "kind": "d", "mode": 0o755}]
    entries = base + spec.get("entries", [])
    def size(e):
        if "declared" in e: return e["declared"]
        if e["kind"] != "f": return 0
        return e.get("zeros", len(e["raw"]) if "raw" in e else len(e.get("data", "").encode()))
    idx = []
    for e in entries:
        row = [e["path"], e["kind"], size(e), e.get("mode", 0o644)]
        if "link" in e: row.append(e["link"])
        if not e.get("unlisted"): idx.append(row)
    total = spec.get("total", sum(r[2] for r in idx))
    index = json.dumps({"format": "sandboxd.export", "version": spec.get("version", 1), "sandbox": name, "created": "c",
                        "total_bytes": total, "entry_count": len(idx), "entries": idx}).encode()
    class Zeros(io.RawIOBase):
        def __init__(self, n): self.n = n
        def readable(self): return True
        def readinto(self, b):
            k = min(len(b), self.n); b[:k] = bytes(k); self.n -= k; return k
    tarpath = out + ".tar"
    with tarfile.open(tarpath, "w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("sandboxd-export.json"); ti.size = len(index); ti.mtime = 1700000000
        tf.addfile(ti, io.BytesIO(index))
        for e in entries:
            ti = tarfile.TarInfo(e.get("tar_path", e["path"]))
            ti.mode = e.get("tar_mode", e.get("mode", 0o644)); ti.mtime = 1700000000; ti.uid = 0; ti.gid = 0
            if "pax" in e: ti.pax_headers = e["pax"]
            k = e.get("tar_kind", e["kind"])
            if k == "d": ti.type = tarfile.DIRTYPE; tf.addfile(ti)
            elif k == "l": ti.type = tarfile.SYMTYPE; ti.linkname = e.get("tar_link", e["link"]); tf.addfile(ti)
            elif k == "h": ti.type = tarfile.LNKTYPE; ti.linkname = e.get("tar_link", e["link"]); tf.addfile(ti)
            elif k == "c": ti.type = tarfile.CHRTYPE; ti.devmajor, ti.devminor = e.get("rdev", [0, 0]); tf.addfile(ti)
            elif k == "b": ti.type = tarfile.BLKTYPE; ti.devmajor, ti.devminor = e.get("rdev", [8, 0]); tf.addfile(ti)
            elif k == "p": ti.type = tarfile.FIFOTYPE; tf.addfile(ti)
            elif "zeros" in e or "tar_zeros" in e:
                ti.size = e.get("tar_zeros", e.get("zeros")); tf.addfile(ti, Zeros(ti.size))
            else:
                data = e["raw"] if "raw" in e else e.get("tar_data", e.get("data", "")).encode(); ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
    z = subprocess.run(["zstd", "-q", "-3", "-c", tarpath], check=True, stdout=subprocess.PIPE).stdout
    mode = spec.get("trailer", "good")
    digest = hashlib.sha256(z).digest()
    if mode == "corrupt":
        z = bytearray(z); z[len(z) // 2] ^= 0x40; z = bytes(z)
    trailer = b"\x5e\x2a\x4d\x18" + struct.pack("<I", 56) + b"SBXD-DIGEST-v1\0\0" + digest + struct.pack("<Q", len(z))
    with open(out, "wb") as f:
        f.write(z)
        if mode != "none": f.write(trailer)
    """#

    struct Case: Sendable {
        var name: String
        var spec: String
        var expect: String
        var flags: [String] = []
    }

    static func cases(canary: String) -> [Case] {
        [
            Case(name: "absolute path", spec: #"{"entries": [{"path": "\#(canary)", "kind": "f", "data": "pwned"}]}"#, expect: "absolute path"),
            Case(name: "absolute path in the tar only", spec: #"{"entries": [{"path": "home/x", "kind": "f", "data": "pwned", "tar_path": "\#(canary)"}]}"#,
                 expect: "where its index says"),
            Case(name: "dot-dot", spec: #"{"entries": [{"path": "home/../../../../x", "kind": "f", "data": "pwned"}]}"#, expect: "'..'"),
            Case(name: "dot-dot in the tar only", spec: #"{"entries": [{"path": "home/x", "kind": "f", "data": "pwned", "tar_path": "home/../../x"}]}"#,
                 expect: "where its index says"),
            Case(name: "symlink escaping", spec: #"{"entries": [{"path": "home/l", "kind": "l", "link": "../../../../../etc/shadow", "mode": 511}]}"#,
                 expect: "points out of the sandbox"),
            Case(name: "write through a symlink", spec: #"{"entries": [{"path": "home/l", "kind": "l", "link": "/tmp", "mode": 511}, {"path": "home/l/x", "kind": "f", "data": "pwned"}]}"#,
                 expect: "through a link"),
            Case(name: "symlink target differs in the tar", spec: #"{"entries": [{"path": "home/l", "kind": "l", "link": "ok", "tar_link": "../../../../etc", "mode": 511}]}"#,
                 expect: "not the symlink the index describes"),
            Case(name: "hard link out", spec: #"{"entries": [{"path": "home/h", "kind": "h", "link": "/etc/shadow"}]}"#, expect: "hard link"),
            Case(name: "device node", spec: #"{"entries": [{"path": "home/sda", "kind": "c", "rdev": [8, 0]}]}"#, expect: "device node"),
            Case(name: "device node posing as a whiteout", spec: #"{"entries": [{"path": "root/upper/sda", "kind": "c", "rdev": [8, 0], "mode": 384}]}"#,
                 expect: "device node"),
            Case(name: "block device in the tar", spec: #"{"entries": [{"path": "root/upper/sda", "kind": "c", "tar_kind": "b", "mode": 384}]}"#,
                 expect: "device node"),
            Case(name: "block device in the index", spec: #"{"entries": [{"path": "root/upper/sda", "kind": "b", "mode": 384}]}"#,
                 expect: "malformed index entry"),
            Case(name: "setuid", spec: #"{"entries": [{"path": "home/su", "kind": "f", "data": "x", "mode": 2541}]}"#, expect: "setuid"),
            Case(name: "setuid in the tar only", spec: #"{"entries": [{"path": "home/su", "kind": "f", "data": "x", "mode": 493, "tar_mode": 2541}]}"#,
                 expect: "setuid"),
            Case(name: "setgid", spec: #"{"entries": [{"path": "home/sg", "kind": "f", "data": "x", "mode": 1517}]}"#, expect: "setgid"),
            Case(name: "file capability", spec: #"{"entries": [{"path": "home/cap", "kind": "f", "data": "x", "pax": {"SCHILY.xattr.security.capability": "x"}}]}"#,
                 expect: "security.capability"),
            Case(name: "entry larger than declared", spec: #"{"entries": [{"path": "home/big", "kind": "f", "declared": 10, "tar_data": "0123456789 and then much more"}]}"#,
                 expect: "larger than declared"),
            Case(name: "bomb: declared beyond the cap", spec: #"{"entries": [{"path": "home/z", "kind": "f", "zeros": 67108864}]}"#,
                 expect: "bytes of files, more than the 16777216-byte cap", flags: ["--max-size", "16M"]),
            Case(name: "bomb: far more than declared", spec: #"{"entries": [{"path": "home/z", "kind": "f", "declared": 100, "tar_zeros": 67108864}]}"#,
                 expect: "larger than declared"),
            Case(name: "total that lies", spec: #"{"total": 5, "entries": [{"path": "home/z", "kind": "f", "data": "0123456789"}]}"#,
                 expect: "not the 5 declared"),
            Case(name: "entry not in the index", spec: #"{"entries": [{"path": "home/extra", "kind": "f", "data": "x", "unlisted": true}]}"#,
                 expect: "which its index does not list"),
            Case(name: "outside the layout", spec: #"{"entries": [{"path": "lock", "kind": "f", "data": "x"}]}"#, expect: "outside what an export holds"),
            Case(name: "digest mismatch", spec: #"{"trailer": "corrupt", "entries": [{"path": "home/x", "kind": "f", "data": "hello"}]}"#,
                 expect: "digest mismatch"),
            Case(name: "no digest", spec: #"{"trailer": "none", "entries": [{"path": "home/x", "kind": "f", "data": "hello"}]}"#,
                 expect: "no sandboxd digest trailer"),
            Case(name: "checkpoint id that is not a number", spec: #"{"entries": [{"path": "checkpoints", "kind": "d", "mode": 448}, {"path": "checkpoints/x", "kind": "d", "mode": 448}]}"#,
                 expect: "outside what an export holds"),
            Case(name: "device node in a checkpoint's home", spec: #"{"entries": [{"path": "checkpoints", "kind": "d", "mode": 448}, {"path": "checkpoints/1", "kind": "d", "mode": 448}, {"path": "checkpoints/1/home", "kind": "d", "mode": 448}, {"path": "checkpoints/1/home/sda", "kind": "c", "mode": 384}]}"#,
                 expect: "device node"),
            Case(name: "bomb: one file copied into many checkpoints", spec: #"{"entries": [{"path": "home/z", "kind": "f", "zeros": 8388608}, {"path": "checkpoints", "kind": "d", "mode": 448}, {"path": "checkpoints/1", "kind": "d", "mode": 448}, {"path": "checkpoints/1/home", "kind": "d", "mode": 448}, {"path": "checkpoints/1/home/a", "kind": "h", "link": "home/z"}, {"path": "checkpoints/1/home/b", "kind": "h", "link": "home/z"}]}"#,
                 expect: "its files add up to more than the", flags: ["--max-size", "20M"]),
            Case(name: "git directory without a repository", spec: #"{"version": 2, "entries": [{"path": "gitdir", "kind": "d", "mode": 493}, {"path": "gitdir/HEAD", "kind": "f", "data": "ref: refs/heads/sandboxd/w\n"}]}"#,
                 expect: "names no repository"),
        ]
    }

    /// Archives of a worker's sandbox on `repo` (whose HEAD is `base`) with a hostile git directory.
    static func workerCases(repo: String, base: String) -> [Case] {
        func worker(head: String = "ref: refs/heads/sandboxd/w\\n", _ extra: String = "") -> String {
            #"{"version": 2, "repository": {"path": "\#(repo)", "worker": "w", "base": "\#(base)"}, "entries": ["#
                + #"{"path": "worktree.meta", "kind": "f", "data": "sandboxd-worktree 1\nworker w\nbase \#(base)\n"}, "#
                + #"{"path": "gitdir", "kind": "d", "mode": 493}, {"path": "gitdir/HEAD", "kind": "f", "data": "\#(head)"}, "#
                + #"{"path": "gitdir/objects", "kind": "d", "mode": 493}, {"path": "gitdir/refs", "kind": "d", "mode": 493}"# + extra + "]}"
        }
        let refDirs = #", {"path": "gitdir/refs/heads", "kind": "d", "mode": 493}, {"path": "gitdir/refs/heads/sandboxd", "kind": "d", "mode": 493}"#
        return [
            Case(name: "HEAD naming a ref with dot-dot", spec: worker(head: #"ref: refs/heads/../../../etc/passwd\n"#), expect: "invalid reference"),
            Case(name: "packed ref with dot-dot", spec: worker(#", {"path": "gitdir/packed-refs", "kind": "f", "data": "\#(base) refs/heads/a/../../../x\n"}"#),
                 expect: "invalid reference name"),
            Case(name: "object that does not verify", spec: worker(#", {"path": "gitdir/objects/ab", "kind": "d", "mode": 493}, {"path": "gitdir/objects/ab/cdef0123456789abcdef0123456789abcdef01", "kind": "f", "zlib": "blob 5\u0000hello"}"#),
                 expect: "does not verify"),
            Case(name: "branch at a commit nobody has", spec: worker(refDirs + #", {"path": "gitdir/refs/heads/sandboxd/w", "kind": "f", "data": "0123456789abcdef0123456789abcdef01234567\n"}"#),
                 expect: "is missing"),
        ]
    }

    @Test func hostileArchivesAreRefusedWithNothingWritten() async throws {
        try await Persist.withHome("hostile") { home in
            let canary = home.scratch.path + "/canary-pwned"
            try home.scratch.write("builder.py", Self.builder)
            func build(_ name: String, _ spec: String) async throws -> String {
                let specPath = home.scratch.path + "/spec-\(name.replacingOccurrences(of: " ", with: "-")).json"
                try spec.write(toFile: specPath, atomically: false, encoding: .utf8)
                let out = specPath.replacingOccurrences(of: ".json", with: ".sbx")
                let b = await sbxRun(["/usr/bin/python3", home.scratch.path + "/builder.py", out, specPath])
                try #require(b.exitCode == 0, "builder: \(b)")
                return out
            }
            // The control: a benign archive from the same builder imports.
            let good = try await build("good", #"{"sandbox": "benign", "entries": [{"path": "home/x", "kind": "f", "data": "hello"}, {"path": "root/upper/etc", "kind": "d", "mode": 493}, {"path": "root/upper/etc/gone", "kind": "c", "mode": 0}]}"#)
            var r = await home.run("import", good, "--name", "control")
            try #require(r.exitCode == 0, "control: \(r)")
            #expect(home.scratch.read("state/sandboxes/control/home/x") == "hello")

            let repo = home.scratch.path + "/repo"
            try WS.makeRepo(repo, files: ["a.txt": "a\n"])
            let base = try WS.git(repo, "rev-parse", "HEAD")
            for c in Self.cases(canary: canary) + Self.workerCases(repo: repo, base: base) {
                let file = try await build(c.name, c.spec)
                r = await home.run(["import", file, "--name", "victim"] + c.flags)
                #expect(r.exitCode == 125, "\(c.name): \(r)")
                #expect(r.stderr.contains(c.expect), "\(c.name): expected '\(c.expect)' in: \(r.stderr)")
                #expect(home.entries() == ["control"], "\(c.name): left \(home.entries())")
                #expect(!FileManager.default.fileExists(atPath: canary), "\(c.name): wrote the canary")
                let worktrees = FileSys.list(home.path + "/worktrees").flatMap { FileSys.list(home.path + "/worktrees/" + $0) }
                #expect(worktrees.isEmpty, "\(c.name): left worktrees \(worktrees)")
                try? FileManager.default.removeItem(atPath: file)
            }
            #expect(!FileManager.default.fileExists(atPath: "/tmp/x"))
        }
    }
}
