// swift-tools-version:6.0
import PackageDescription

// The launch path runs once per process, so first-use costs of the Swift
// runtime are most of its Swift time: instantiate generic types through
// direct accessor calls instead of demangling their names at run time.
let startupSettings: [SwiftSetting] = [
    .unsafeFlags(["-Xfrontend", "-disable-concrete-type-metadata-mangled-name-accessors"]),
]

let package = Package(
    name: "sandboxd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sandboxd", targets: ["sandboxd"]),
        .executable(name: "sandboxd-ext", targets: ["sandboxd-ext"]),
        .library(name: "SandboxKit", targets: ["SandboxKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C libraries reached through pkg-config; scripts/lib.sh (used by demo, test, bench) installs their -dev packages.
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CGit2", pkgConfig: "libgit2", providers: [.apt(["libgit2-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        // The only code that runs between clone() and execve(): raw syscalls, no allocation.
        // -fno-plt: its calls into libc go through a GOT bound at load, never through the
        // lazy binder, which would write the thread-local state pid 1 shares with sandboxd
        // (the static-PIE launcher has no lazy binding; on aarch64 clang honours -fno-plt
        // from LLVM 18, and Swift 6.3 ships 21).
        .target(name: "CSandbox", cSettings: [.unsafeFlags(["-O2", "-fno-strict-aliasing", "-fno-plt"])]),
        .target(
            name: "SandboxKit",
            dependencies: ["CSandbox", "CSeccomp", "CCap"],
            swiftSettings: startupSettings
        ),
        // What needs heavy shared libraries (libgit2, libarchive) lives apart from
        // the launcher: linking them costs every process start ~3 ms.
        .target(name: "SandboxExt", dependencies: ["SandboxKit", "CGit2", "CArchive"]),
        .executableTarget(
            name: "sandboxd",
            dependencies: ["SandboxKit"],
            swiftSettings: startupSettings,
            // A static PIE: no dynamic loader or libstdc++ symbol binding at start,
            // fewer mappings for clone3 to copy (docs/DESIGN.md "Startup"), and
            // still ASLR for a program run as root. scripts/ld-static-pie runs
            // lld without SwiftPM's run path, which glibc's static PIE start-up
            // refuses; DT_RELR packs the relocations it applies to itself.
            linkerSettings: [.unsafeFlags([
                "-static-executable", "-Xclang-linker", "-static-pie",
                "-Xclang-linker", "--ld-path=\(Context.packageDirectory)/scripts/ld-static-pie",
                "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
            ])]
        ),
        // Every subcommand but exec, forwarded here by execv: swift-argument-parser,
        // libgit2 and libarchive stay out of the launcher.
        .executableTarget(
            name: "sandboxd-ext",
            dependencies: ["SandboxExt", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // A small C program the integration tests run *inside* sandboxes to try abusive actions.
        .executableTarget(name: "sbx-probe"),
        .testTarget(name: "SandboxKitTests", dependencies: ["SandboxKit", "SandboxExt"]),
        .testTarget(name: "IntegrationTests", dependencies: ["SandboxKit", "SandboxExt"]),
    ],
    swiftLanguageModes: [.v6]
)
