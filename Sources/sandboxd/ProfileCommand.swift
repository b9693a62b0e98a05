import ArgumentParser
import SandboxKit

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "profile")
    func run() throws {}
}
