# Shared by scripts/*: install what is missing, build. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"

# Debian packages sandboxd builds against (-dev) or measures with. The launcher
# is a static executable: it links libc.a, libstdc++.a, libseccomp.a and libcap.a.
GCC_MAJOR=$(gcc -dumpversion 2>/dev/null | cut -d. -f1); GCC_MAJOR=${GCC_MAJOR:-12}
SANDBOXD_BUILD_DEPS=(pkg-config libc6-dev "libstdc++-$GCC_MAJOR-dev" libseccomp-dev libcap-dev libgit2-dev libarchive-dev)

ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_swift() {
    command -v swift >/dev/null || { echo "swift not found: install Swift 6 (https://swift.org/install) and re-run" >&2; exit 1; }
}

# Release build with the Swift standard library linked statically (the launcher
# is fully static whatever the flags; see Package.swift): it starts faster.
build_release() {
    echo "==> building sandboxd (release, static stdlib)"
    (cd "$ROOT" && swift build -c release --static-swift-stdlib)
    SANDBOXD="$ROOT/.build/release/sandboxd"
    [ -x "$SANDBOXD" ] || { echo "build failed" >&2; exit 1; }
}
