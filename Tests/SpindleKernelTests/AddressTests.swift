import Testing
import SpindleKernel

@Suite struct AddressTests {
    @Test(arguments: ["inproc://a", "tcp://127.0.0.1:7100", "tcp://[::1]:0", "unix:///tmp/s.sock", "tcp://localhost:80"])
    func roundTrip(_ text: String) throws {
        let a = try Address(parsing: text)
        #expect(a.description == text)
    }

    @Test func rejectsBadPort() {
        #expect(throws: AddressParseError.self) { try Address(parsing: "tcp://127.0.0.1:70000") }
        do { _ = try Address(parsing: "tcp://127.0.0.1:x") } catch { #expect(error.part == .port) }
    }
}
