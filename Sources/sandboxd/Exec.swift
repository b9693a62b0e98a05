import ArgumentParser
import SandboxKit

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec")
    func run() throws {}
}
