import Testing
import SpindleKernel

@Suite struct AddressTests {
    @Test(arguments: [
        "inproc://a", "inproc://mesh.agent-1", "tcp://127.0.0.1:7100", "tcp://0.0.0.0:0",
        "tcp://[::1]:0", "tcp://[2001:db8::1:2]:65535", "tcp://[fe80::1%eth0]:80",
        "tcp://[::ffff:192.168.0.1]:9", "unix:///tmp/s.sock", "unix:///var/run/spindle/agent.sock",
        "tcp://localhost:80", "tcp://host-1.example.com:443",
    ])
    func roundTrip(_ text: String) throws {
        let a = try Address(parsing: text)
        #expect(a.description == text)
        #expect(Address(a.description) == a)
    }

    @Test func parsesIntoParts() throws {
        #expect(try Address(parsing: "tcp://[::1]:7100") == .tcp(host: "::1", port: 7100))
        #expect(try Address(parsing: "tcp://10.0.0.2:0") == .tcp(host: "10.0.0.2", port: 0))
        #expect(try Address(parsing: "unix:///tmp/x") == .unix(path: "/tmp/x"))
        #expect(try Address(parsing: "inproc://q") == .inproc(name: "q"))
        #expect(Address.tcp(host: "::1", port: 1).description == "tcp://[::1]:1")
        #expect(try Address(parsing: "tcp://[::1]:1").isLoopback)
        #expect(try !Address(parsing: "tcp://10.1.1.1:1").isLoopback)
    }

    @Test(arguments: [
        ("127.0.0.1:80", AddressParseError.Part.scheme),
        ("http://x:1", .scheme),
        ("inproc://", .name),
        ("inproc://a/b", .name),
        ("unix://relative/path", .path),
        ("unix:///", .path),
        ("unix:///" + String(repeating: "p", count: 120), .path),
        ("tcp://127.0.0.1", .port),
        ("tcp://127.0.0.1:", .port),
        ("tcp://127.0.0.1:70000", .port),
        ("tcp://127.0.0.1:x", .port),
        ("tcp://127.0.0.1:+80", .port),
        ("tcp://127.0.0.1:-1", .port),
        ("tcp://:80", .host),
        ("tcp://::1:80", .host),
        ("tcp://[::1:80", .host),
        ("tcp://[zz::1]:80", .host),
        ("tcp://[fe80::1%]:80", .host),
        ("tcp://[::1]80", .port),
        ("tcp://bad host:80", .host),
    ])
    func rejectionNamesThePart(_ text: String, _ part: AddressParseError.Part) {
        do {
            let a = try Address(parsing: text)
            Issue.record("\(text) parsed as \(a)")
        } catch {
            #expect(error.part == part, "\(text): \(error)")
            #expect(error.description.contains(part.rawValue))
            #expect(error.text == text)
        }
        #expect(Address(text) == nil)
    }
}
