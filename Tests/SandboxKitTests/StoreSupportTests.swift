import Foundation
import Testing
@testable import SandboxKit

@Suite("Store support: SHA-256, JSON reader and writer")
struct StoreSupportTests {
    // FIPS 180-4 / NIST CAVP vectors.
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    ])
    func sha256Vectors(input: String, expected: String) {
        #expect(SHA256.hex(of: input) == expected)
    }

    @Test func sha256MillionA() {
        var h = SHA256()
        let chunk = [UInt8](repeating: 0x61, count: 1000)
        for _ in 0..<1000 { h.update(chunk) }
        #expect(h.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Any split of the input into updates gives the same digest (block boundaries, partial blocks).
    @Test func sha256IncrementalMatchesOneShot() {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let whole = SHA256.hash(data)
        for split in [1, 7, 55, 56, 63, 64, 65, 127, 128, 999] {
            var h = SHA256()
            var i = 0
            while i < data.count {
                let end = min(data.count, i + split)
                h.update(Array(data[i..<end]))
                i = end
            }
            #expect(h.finalize() == whole, "split \(split)")
        }
        // Lengths around the padding boundary.
        for n in 54...66 {
            let d = [UInt8](repeating: 0x5a, count: n)
            var h = SHA256()
            h.update(Array(d[0..<(n / 2)]))
            h.update(Array(d[(n / 2)...]))
            #expect(h.finalize() == SHA256.hash(d))
        }
    }

    @Test func jsonParsesEveryKind() throws {
        let v = try JSONParser.parse(#" { "a": [1, -2, 3.5, 1e3, true, false, null], "b": {"c": "d\"e\\f\n\u00e9\ud83d\ude00"}, "e": "" } "#)
        #expect(v["a"]?.arrayValue?.count == 7)
        #expect(v["a"]?.arrayValue?[0] == .int(1))
        #expect(v["a"]?.arrayValue?[1] == .int(-2))
        #expect(v["a"]?.arrayValue?[2] == .double(3.5))
        #expect(v["a"]?.arrayValue?[3] == .double(1000))
        #expect(v["a"]?.arrayValue?[4] == .bool(true))
        #expect(v["a"]?.arrayValue?[6] == .null)
        #expect(v["b"]?["c"]?.stringValue == "d\"e\\f\né😀")
        #expect(v["e"]?.stringValue == "")
        #expect(try JSONParser.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSONParser.parse("[]") == .array([]))
        #expect(try JSONParser.parse("{}") == .object([]))
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\" 1}", "\"abc", "tru", "01", "1.", "\"\\x\"", "\"\\ud800\"", "[1] x", "{\"a\":1,}", "\"a\u{1}\""])
    func jsonRefusesMalformed(text: String) {
        #expect(throws: JSONParser.Error.self) { try JSONParser.parse(text) }
    }

    @Test func jsonRefusesDeepNesting() {
        let deep = String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)
        #expect(throws: JSONParser.Error.self) { try JSONParser.parse(deep) }
    }

    /// The byte writer produces the same text as `rendered`, and what it writes parses back equal.
    @Test func jsonWriterMatchesRendererAndRoundTrips() throws {
        let v = JSON.object([
            ("s", .string("quote \" backslash \\ nl \n tab \t cr \r ctl \u{1} é 😀")),
            ("i", .int(-42)), ("d", .double(0.25)), ("b", .bool(false)), ("n", .null),
            ("a", .array([.int(1), .array([]), .object([])])), ("o", .object([("k", .string("v"))])),
        ])
        #expect(String(decoding: v.bytes(pretty: true), as: UTF8.self) == v.rendered(pretty: true))
        #expect(v.compact() == v.rendered(pretty: false))
        #expect(try JSONParser.parse(v.bytes(pretty: true)) == v)
        #expect(try JSONParser.parse(v.compact()) == v)
    }

    @Test func jsonSettingReplacesOrAppends() {
        let v = JSON.object([("a", .int(1))]).setting("a", .int(2)).setting("b", .int(3))
        #expect(v.compact() == #"{"a":2,"b":3}"#)
    }
}
