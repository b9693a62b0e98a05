import Testing

@testable import SandboxKit

/// The TOML reader: every value kind, the structure rules, and errors located on the right line.
@Suite struct ProfileTOMLTests {
    private func parse(_ text: String) throws(ProfileError) -> TOMLTable {
        try TOMLParser.parse(text, file: "test.toml")
    }

    private func value(_ text: String, _ path: String...) throws -> TOMLValue.Kind? {
        var table = try parse(text)
        for key in path.dropLast() {
            guard case .table(let child)? = table[key]?.value.kind else { return nil }
            table = child
        }
        return table[path.last!]?.value.kind
    }

    @Test(arguments: [
        ("x = \"hello\"", TOMLValue.Kind.string("hello")),
        ("x = 'C:\\path\\n'", .string("C:\\path\\n")),
        ("x = \"\"", .string("")),
        ("x = \"q\\\" b\\\\ n\\n t\\t e\\u00E9 s\\U0001F600\"", .string("q\" b\\ n\n t\t eé s😀")),
        ("x = 42", .integer(42)),
        ("x = -17", .integer(-17)),
        ("x = +5", .integer(5)),
        ("x = 1_000_000", .integer(1_000_000)),
        ("x = 0", .integer(0)),
        ("x = 1.5", .float(1.5)),
        ("x = -0.25", .float(-0.25)),
        ("x = 2e3", .float(2000)),
        ("x = 1e-05", .float(0.00001)),
        ("x = 6.5E+2", .float(650)),
        ("x = true", .boolean(true)),
        ("x = false", .boolean(false)),
        ("x = []", .array([])),
    ])
    func scalarValues(text: String, expected: TOMLValue.Kind) throws {
        #expect(try value(text, "x") == expected)
    }

    @Test func multiLineArraysWithCommentsAndTrailingComma() throws {
        let table = try parse("""
            # leading comment
            list = [  # opening comment
                "a",   # first
                # a line of its own
                'b',
                [1, 2],
            ]
            after = 1
            """)
        let entry = try #require(table["list"])
        #expect(entry.line == 2)
        guard case .array(let items) = entry.value.kind else { Issue.record("not an array"); return }
        #expect(items.map(\.line) == [3, 5, 6])
        #expect(items[0].kind == .string("a"))
        #expect(items[1].kind == .string("b"))
        #expect(items[2].kind == .array([.init(kind: .integer(1), line: 6), .init(kind: .integer(2), line: 6)]))
        #expect(table["after"]?.line == 8)
    }

    @Test func dottedAndQuotedKeys() throws {
        let text = """
            limits.memory = "1GiB"
            limits . pids = 5
            "a.b" = 1
            'lit' = 2
            "quoted".inner = 3
            """
        #expect(try value(text, "limits", "memory") == .string("1GiB"))
        #expect(try value(text, "limits", "pids") == .integer(5))
        #expect(try value(text, "a.b") == .integer(1))
        #expect(try value(text, "lit") == .integer(2))
        #expect(try value(text, "quoted", "inner") == .integer(3))
    }

    @Test func tableHeadersNestAndKeepLines() throws {
        let text = """
            top = 1

            [a.b]
            x = 1
            [a]
            y = 2
            [ c . "d e" ]
            z = 3
            """
        let table = try parse(text)
        #expect(table["top"]?.line == 1)
        #expect(try value(text, "a", "b", "x") == .integer(1))
        #expect(try value(text, "a", "y") == .integer(2))
        #expect(try value(text, "c", "d e", "z") == .integer(3))
        guard case .table(let a)? = table["a"]?.value.kind else { Issue.record("no [a]"); return }
        #expect(a["y"]?.line == 6)
        #expect(a["b"]?.line == 3)
    }

    @Test func inlineTables() throws {
        let text = #"set = { PATH = "/bin", "X-Y" = "z", nested.deep = 1 }"# + "\nempty = {}"
        #expect(try value(text, "set", "PATH") == .string("/bin"))
        #expect(try value(text, "set", "X-Y") == .string("z"))
        #expect(try value(text, "set", "nested", "deep") == .integer(1))
        guard case .table(let empty)? = try value(text, "empty") else { Issue.record("no empty table"); return }
        #expect(empty.entries.isEmpty)
    }

    @Test func windowsLineEndingsCountLines() throws {
        let table = try parse("a = 1\r\n\r\nb = 2\r\n")
        #expect(table["b"]?.line == 3)
    }

    @Test func emptyAndCommentOnlyDocuments() throws {
        #expect(try parse("").entries.isEmpty)
        #expect(try parse("# nothing\n\n   # at all\n").entries.isEmpty)
    }

    /// Each malformed document fails on the expected line with a message that says what was expected.
    @Test(arguments: [
        ("a = 1\nb = 2\na = 3", 3, "duplicate key 'a' (first set on line 1)"),
        ("[t]\nx = 1\n[t]\ny = 2", 3, "table [t] is defined twice (first on line 1)"),
        ("[t]\nx = 1\nx = 2", 3, "duplicate key 't.x'"),
        ("a = \"open\nb = 1", 1, "unterminated string"),
        ("a = 'open", 1, "unterminated literal string"),
        ("\n\nkey \"x\"", 3, "expected '=' after key 'key'"),
        ("mode = loopback", 1, "strings must be quoted: \"loopback\""),
        ("a = \"\"\"\nmulti\n\"\"\"", 1, "multi-line strings are not supported"),
        ("when = 1979-05-27", 1, "dates and times are not supported"),
        ("n = 0x1F", 1, "write '0x1F' in decimal"),
        ("n = 007", 1, "no leading zeros"),
        ("n = 1__0", 1, "'_' only between digits"),
        ("n = 1.", 1, "is not a number"),
        ("n = 99999999999999999999", 1, "out of range for an integer"),
        ("n = inf", 1, "inf and nan are not supported"),
        ("[[items]]\nx = 1", 1, "arrays of tables ([[...]]) are not supported"),
        ("t = { a = 1,\n b = 2 }", 1, "inline tables must fit on one line"),
        ("t = { a = 1, }", 1, "trailing comma in an inline table"),
        ("x = [1, 2\ny = 3", 2, "expected ',' or ']' in the array opened on line 1"),
        ("x = [\n1,\n", 3, "unterminated array (opened on line 1)"),
        ("x = 1 y = 2", 1, "unexpected 'y' after the value of 'x'"),
        ("[t] x = 1", 1, "unexpected 'x' after the table header"),
        ("s = \"bad \\q escape\"", 1, "unknown escape \\q"),
        ("s = \"\\u12\"", 1, "must be followed by 4 hexadecimal digits"),
        ("s = \"\\uD800\"", 1, "surrogate"),
        ("t = { a = 1 }\nt.b = 2", 2, "a dotted key cannot add to it"),
        ("t = { a = 1 }\n[t.sub]", 2, "was written inline on line 1"),
        ("a = 1\n[a]", 2, "'a' is already an integer"),
        ("[a]\nb = 1\n[a.b]", 3, "'a.b' is already an integer"),
        ("a.b = 1\na = 2", 2, "duplicate key 'a'"),
        ("= 5", 1, "expected a key, found '='"),
        ("a =\nb = 1", 1, "expected a value after 'a ='"),
        ("a = @", 1, "expected a value (a \"string\""),
        ("[t\nx = 1", 1, "expected ']' to close the table header [t"),
        ("a = 1\rb = 2", 1, "a carriage return must be followed by a newline"),
    ])
    func errorsNameTheLine(text: String, line: Int, message: String) {
        let error = #expect(throws: ProfileError.self) { try parse(text) }
        #expect(error?.file == "test.toml")
        #expect(error?.line == line, "\(error?.description ?? "")")
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "no error") should contain: \(message)")
    }

    @Test func errorsNameTheKey() {
        let error = #expect(throws: ProfileError.self) { try parse("[limits]\nmemory = \"x\"\nmemory = 1") }
        #expect(error?.key == "limits.memory")
        let valueError = #expect(throws: ProfileError.self) { try parse("[limits]\nmemory = nope") }
        #expect(valueError?.key == "limits.memory")
    }
}
