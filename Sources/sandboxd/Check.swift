import ArgumentParser
import SandboxKit

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check")
    func run() throws {}
}
