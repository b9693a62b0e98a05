public enum SandboxKit {
    public static let version = "0.1.0"
}
