import Foundation
import Glibc
import SandboxKit
import Testing

/// sandboxd SIGKILLed at random moments during exec, export and checkpoint:
/// afterwards the sandbox is listable, inspectable, its audit log verifies,
/// and it resumes; nothing is left running or mounted.
@Suite("Persistence: SIGKILL at random points", .serialized)
struct PersistenceCrashTests {
    static let rounds = 24

    @Test func killedAnywhereLeavesEverySandboxResumable() async throws {
        try await Persist.withHome("crash") { home in
            var r = await home.run("create", "box")
            try #require(r.exitCode == 0, "\(r)")
            // Enough state that export and checkpoint take a while: 1,500 files and 8 MB.
            r = await home.sh("box", """
                set -e
                mkdir -p "$HOME/many" /usr/local/share/sbx
                i=0; while [ $i -lt 1500 ]; do echo "file $i" > "$HOME/many/f$i"; i=$((i+1)); done
                head -c 8000000 /dev/urandom > big.bin
                echo tool > /usr/local/share/sbx/tool
                """)
            try #require(r.exitCode == 0, "\(r)")
            r = await home.run("create", "bystander")
            try #require(r.exitCode == 0, "\(r)")

            let marker = sbxMarker("crash")
            let export = home.scratch.path + "/box.sbx"
            var rng = SystemRandomNumberGenerator()
            var killed: [(String, Double, pid_t)] = []
            var sawInterrupted = false
            for round in 0..<Self.rounds {
                let op = ["exec", "export", "checkpoint"][round % 3]
                let args: [String]
                switch op {
                case "exec":
                    args = ["exec", "--no-tty", "box", "--", "/bin/sh", "-c",
                            "i=0; while [ $i -lt 300 ]; do echo $i > \"$HOME/counter\"; i=$((i+1)); done; echo more >> big.bin; sleep 30", marker]
                case "export": args = ["export", "box", "-o", export]
                default: args = ["checkpoint", "box", "--label", "round-\(round)"]
                }
                // Spread over the whole operation: from before the lock to well into the work.
                let delay = Double.random(in: 0..<0.4, using: &rng)
                var spawn = SbxSpawn()
                spawn.environment["SANDBOXD_HOME"] = home.path
                spawn.cwd = home.scratch.path
                let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
                let pid = try SbxProcess.spawn([Sbx.sandboxd] + args, spawn, stdout: null, stderr: null)
                close(null)
                await sbxSleep(delay)
                kill(pid, SIGKILL)
                let status = SbxProcess.reap(pid)
                killed.append((op, delay, pid))
                let context = "round \(round): \(op) killed after \(String(format: "%.3f", delay)) s (status \(status.code))"

                // The sandbox is listable and inspectable, not "running", once the killed run's pid 1 is gone.
                var status1 = ""
                for _ in 0..<100 {
                    let list = try await home.json("list", "--json") as? [[String: Any]] ?? []
                    status1 = list.first { $0["name"] as? String == "box" }?["status"] as? String ?? "missing"
                    if status1 != "running" { break }
                    await sbxSleep(0.05)
                }
                #expect(["idle", "interrupted"].contains(status1), "\(context): status \(status1)")
                if status1 == "interrupted" { sawInterrupted = true }
                let info = try await home.json("inspect", "box", "--json") as? [String: Any]
                #expect(info?["lock"] is NSNull, "\(context): still locked")
                let runs = info?["runs"] as? [[String: Any]] ?? []
                #expect(!runs.contains { $0["state"] as? String == "running" }, "\(context)")
                r = await home.run("audit", "verify", "box")
                #expect(r.exitCode == 0, "\(context): \(r)")
                r = await home.run("checkpoints", "box", "--json")
                #expect(r.exitCode == 0, "\(context): \(r)")
                // And it resumes, with its state.
                r = await home.sh("box", "cat /usr/local/share/sbx/tool; test -f big.bin && ls \"$HOME/many\" | wc -l")
                #expect(r.exitCode == 0 && r.stdout == "tool\n1500\n", "\(context): \(r)")
                // That exec's records are synced and renamed into place after it answers; inspect waits for them.
                r = await home.run("inspect", "box")
                #expect(r.exitCode == 0, "\(context): \(r)")
                #expect(!FileSys.list(home.dir("box") + "/checkpoints").contains { $0.hasPrefix(".") }, "\(context)")
                #expect(!FileSys.list(home.dir("box")).contains { $0.hasPrefix(".") || $0.hasPrefix("manifest.json.tmp") }, "\(context)")
            }
            #expect(sawInterrupted || !killed.contains { $0.0 == "exec" && $0.1 > 0.2 }, "no run was ever marked interrupted")

            // The other sandbox never noticed.
            let list = try await home.json("list", "--json") as? [[String: Any]] ?? []
            #expect(list.first { $0["name"] as? String == "bystander" }?["status"] as? String == "created")
            // Every checkpoint that was listed is whole: rewinding to the last one works.
            r = await home.run("checkpoints", "box", "--json")
            let cps = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]]) ?? []
            if let last = cps.last?["id"] as? Int {
                r = await home.run("rewind", "box", String(last))
                #expect(r.exitCode == 0, "\(r)")
                r = await home.sh("box", "cat /usr/local/share/sbx/tool")
                #expect(r.stdout == "tool\n", "\(r)")
            }
            // An export that completed (atomically renamed into place) imports.
            if FileManager.default.fileExists(atPath: export) {
                let other = Persist.Home(path: home.scratch.path + "/other", scratch: home.scratch)
                r = await other.run("import", export)
                #expect(r.exitCode == 0, "\(r)")
            }
            // Nothing left behind: sandbox processes, cgroups of the killed sandboxd, half-made directories.
            #expect(await SbxHost.waitUntilGone(marker, seconds: 5).isEmpty)
            for (_, _, pid) in killed {
                var left: [String] = []
                for _ in 0..<100 {
                    left = SbxHost.cgroupDirs(named: "sandboxd-\(pid)")
                    if left.isEmpty { break }
                    await sbxSleep(0.05)
                }
                #expect(left.isEmpty, "cgroups of killed sandboxd \(pid): \(left)")
            }
            #expect(home.entries().filter { !$0.hasPrefix(".") } == ["box", "bystander"])
            _ = await home.run("list")  // collects half-made directories of dead processes
            #expect(home.entries() == ["box", "bystander"])
        }
    }
}
