/// Exit codes, following `docker run` and `timeout(1)`.
public enum ExitCode {
    /// The command ran past its wall-clock timeout and was killed.
    public static let timeout: Int32 = 124
    /// sandboxd itself failed: bad input, or a layer of isolation could not be set up.
    public static let sandboxFailed: Int32 = 125
    /// The command exists but could not be executed (permission, bad format).
    public static let cannotExecute: Int32 = 126
    /// The command was not found.
    public static let notFound: Int32 = 127
    /// A path lock is held by another worker (EX_TEMPFAIL from sysexits.h).
    public static let lockConflict: Int32 = 75
}

/// `ExitCode` by a name that does not collide with swift-argument-parser's.
public typealias SandboxExitCode = ExitCode

/// An error that ends a sandboxd command: a message that says what to do, and the exit code.
public struct SandboxError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = ExitCode.sandboxFailed) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}

/// A profile that cannot be used, located precisely: `file:line: key: message`.
public struct ProfileError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int
    public var key: String
    public var message: String
    public init(file: String, line: Int, key: String, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }
    public var description: String {
        let loc = line > 0 ? "\(file):\(line)" : file
        return key.isEmpty ? "\(loc): \(message)" : "\(loc): \(key): \(message)"
    }
}
