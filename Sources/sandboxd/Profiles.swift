import ArgumentParser
import SandboxKit

struct Profiles: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "profiles")
    func run() throws {}
}
