/// A path claim or rule pattern: a path or glob relative to the repository root.
///
/// Syntax, per `/`-separated segment:
/// - a literal segment (`Sources`, `README.md`);
/// - `*` any run of characters within the segment, `?` one character, `[a-z]` / `[!a-z]` a class;
///   `\x` escapes `x`;
/// - `**` as a whole segment: zero or more segments.
///
/// Patterns are anchored at the repository root (`*.md` is top-level Markdown files only; use
/// `**/*.md` for any depth). A pattern also covers everything below what it names: `Sources/Auth`
/// claims `Sources/Auth/**` too, so a directory and the files in it can never be held by two workers.
public struct PathPattern: Sendable, Hashable, CustomStringConvertible {
    /// The normalized pattern text (no leading `./` or `/`, no empty or `.` segments).
    public let text: String
    let segments: [Segment]

    public var description: String { text }

    public init(_ pattern: String) throws {
        text = try Self.normalize(pattern)
        var segs = Self.parse(text)
        if segs.last != .anyDepth { segs.append(.anyDepth) }
        segments = segs
    }

    /// Canonical text for a pattern; throws on an empty pattern, `..`, NUL or newline.
    public static func normalize(_ pattern: String) throws -> String {
        if pattern.isEmpty { throw SandboxError("empty path pattern") }
        if pattern.unicodeScalars.contains(where: { $0 == "\0" || $0 == "\n" || $0 == "\r" }) {
            throw SandboxError("path pattern '\(pattern)' contains a control character")
        }
        var parts: [Substring] = []
        for part in pattern.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { throw SandboxError("path pattern '\(pattern)' leaves the repository ('..')") }
            parts.append(part)
        }
        if parts.isEmpty { return "**" }
        // Adjacent `**` segments mean the same as one.
        var out: [Substring] = []
        for p in parts where !(p == "**" && out.last == "**") { out.append(p) }
        return out.joined(separator: "/")
    }

    /// Whether a concrete path (relative to the repository root, `/`-separated) is covered.
    public func matches(_ path: String) -> Bool {
        let segs = path.split(separator: "/", omittingEmptySubsequences: true)
            .filter { $0 != "." }
            .map { Segment.glob($0.unicodeScalars.map { Atom.literal($0) }) }
        return Self.segmentsIntersect(segments, segs + [])
    }

    /// Whether some path could be covered by both patterns (a conflict between two claims).
    /// Conservative: when it cannot tell (character classes against each other), it says yes.
    public func overlaps(_ other: PathPattern) -> Bool {
        Self.segmentsIntersect(segments, other.segments)
    }

    /// True when any pattern in `patterns` covers `path`.
    public static func any(_ patterns: [PathPattern], matches path: String) -> Bool {
        patterns.contains { $0.matches(path) }
    }

    // MARK: representation

    enum Segment: Hashable, Sendable {
        /// `**`: zero or more segments.
        case anyDepth
        /// One segment, as a glob over Unicode scalars.
        case glob([Atom])
    }

    enum Atom: Hashable, Sendable {
        case literal(Unicode.Scalar)
        /// `?`
        case one
        /// `*`
        case star
        /// `[...]`
        case set(CharSet)
    }

    struct CharSet: Hashable, Sendable {
        var negated: Bool
        var ranges: [ClosedRange<UInt32>]
        func contains(_ c: Unicode.Scalar) -> Bool {
            ranges.contains { $0.contains(c.value) } != negated
        }
    }

    static func parse(_ text: String) -> [Segment] {
        text.split(separator: "/", omittingEmptySubsequences: true).map { seg in
            seg == "**" ? .anyDepth : .glob(parseSegment(Array(seg.unicodeScalars)))
        }
    }

    static func parseSegment(_ s: [Unicode.Scalar]) -> [Atom] {
        var atoms: [Atom] = []
        var i = 0
        while i < s.count {
            let c = s[i]
            switch c {
            case "\\" where i + 1 < s.count:
                atoms.append(.literal(s[i + 1]))
                i += 2
            case "*":
                // `**` inside a segment means the same as `*`.
                if atoms.last != .star { atoms.append(.star) }
                i += 1
            case "?":
                atoms.append(.one)
                i += 1
            case "[":
                if let (set, next) = parseClass(s, from: i) {
                    atoms.append(.set(set))
                    i = next
                } else {
                    atoms.append(.literal(c))
                    i += 1
                }
            default:
                atoms.append(.literal(c))
                i += 1
            }
        }
        return atoms
    }

    /// Parses `[...]` starting at `start` (the `[`); nil when there is no closing `]`.
    static func parseClass(_ s: [Unicode.Scalar], from start: Int) -> (CharSet, Int)? {
        var i = start + 1
        var negated = false
        if i < s.count && (s[i] == "!" || s[i] == "^") {
            negated = true
            i += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var first = true
        while i < s.count {
            var c = s[i]
            if c == "]" && !first { return (CharSet(negated: negated, ranges: ranges), i + 1) }
            first = false
            if c == "\\" && i + 1 < s.count {
                i += 1
                c = s[i]
            }
            if i + 2 < s.count && s[i + 1] == "-" && s[i + 2] != "]" {
                let hi = s[i + 2]
                if c.value <= hi.value { ranges.append(c.value...hi.value) }
                i += 3
            } else {
                ranges.append(c.value...c.value)
                i += 1
            }
        }
        return nil
    }

    // MARK: intersection

    /// Whether two sequences of segments can match a common path. `**` behaves like `*` over segments.
    static func segmentsIntersect(_ a: [Segment], _ b: [Segment]) -> Bool {
        intersect(a, b, isWildcard: { $0 == .anyDepth }) { x, y in
            guard case .glob(let p) = x, case .glob(let q) = y else { return false }
            return atomsIntersect(p, q)
        }
    }

    /// Whether two segment globs can match a common string.
    static func atomsIntersect(_ a: [Atom], _ b: [Atom]) -> Bool {
        intersect(a, b, isWildcard: { $0 == .star }, compatible)
    }

    /// Whether two patterns over the same alphabet can match a common word: a
    /// wildcard matches any run of symbols (either it ends here, or it takes the
    /// symbol the other side stands for); other symbols must be `compatible`.
    /// Memoized over positions, so O(|a|·|b|).
    static func intersect<T>(_ a: [T], _ b: [T], isWildcard: (T) -> Bool, _ compatible: (T, T) -> Bool) -> Bool {
        let n = a.count, m = b.count
        var memo = [Int8](repeating: -1, count: (n + 1) * (m + 1))
        func go(_ i: Int, _ j: Int) -> Bool {
            let key = i * (m + 1) + j
            if memo[key] >= 0 { return memo[key] == 1 }
            let r: Bool
            if i == n && j == m {
                r = true
            } else if i < n && isWildcard(a[i]) {
                r = go(i + 1, j) || (j < m && go(i, j + 1))
            } else if j < m && isWildcard(b[j]) {
                r = go(i, j + 1) || (i < n && go(i + 1, j))
            } else if i < n && j < m {
                r = compatible(a[i], b[j]) && go(i + 1, j + 1)
            } else {
                r = false
            }
            memo[key] = r ? 1 : 0
            return r
        }
        return go(0, 0)
    }

    /// Whether two single-character atoms accept a common character.
    static func compatible(_ x: Atom, _ y: Atom) -> Bool {
        switch (x, y) {
        case (.literal(let p), .literal(let q)): return p == q
        case (.one, _), (_, .one): return true
        case (.set(let s), .literal(let c)), (.literal(let c), .set(let s)): return s.contains(c)
        case (.set(let s), .set(let t)):
            // Exact for two positive classes; a negated class is assumed to overlap (conservative).
            if s.negated || t.negated { return true }
            return s.ranges.contains { r in t.ranges.contains { $0.overlaps(r) } }
        case (.star, _), (_, .star): return true
        }
    }
}
