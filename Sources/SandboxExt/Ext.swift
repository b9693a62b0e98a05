@_exported import SandboxKit

/// SandboxExt: the parts of sandboxd that need heavy shared libraries
/// (libgit2 for workspaces, libarchive for export/import). Only the
/// `sandboxd-ext` binary links it; `sandboxd` forwards those subcommands.
public enum SandboxExt {}
