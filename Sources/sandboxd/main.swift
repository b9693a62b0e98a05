import Glibc
import SandboxKit

// The launcher: `sandboxd exec` (and `--version`) run here, parsed by hand
// (see ExecOptions); every other subcommand, and the overall help, is in the
// companion binary `sandboxd-ext`, which this process becomes by execv.
let arguments = CommandLine.arguments
switch arguments.count > 1 ? arguments[1] : nil {
case "exec":
    exit(ExecCommand.main(arguments.dropFirst(2)))
case "help" where arguments.count > 2 && arguments[2] == "exec":
    print(ExecOptions.help, terminator: "")
case "--version":
    print(SandboxKit.version)
default:
    Forward.toCompanion(arguments)
}
