import Foundation
import SpindleEventLoop
import SpindleKernel
import Synchronization
import Testing

@Suite("docs/eventloop.md example")
struct DocExampleTests {
    @Test("the worked example runs: execute, submit, timers, TCP echo, cat, signals, shutdown")
    func workedExample() async throws {
        let loop = try EventLoop(name: "io")
        let ranOnLoop = Promise<Bool>()
        loop.execute { ranOnLoop.fulfil(loop.inEventLoop) }
        #expect(try await ranOnLoop.wait(10, "execute"))
        #expect(try await loop.submit { 6 * 7 } == 42)

        let once = loop.scheduleTimer(after: .milliseconds(50)) {}
        let tick = loop.scheduleRepeating(every: .seconds(1)) {}
        once.cancel(); tick.cancel()

        let listener = try await StreamListener.listen(on: loop, address: .tcp(host: "127.0.0.1", port: 0)) { conn in
            conn.start(onRead: { chunk in conn.write(Array(chunk)) }, onClose: { _ in conn.close() })
        }
        let client = try await StreamChannel.connect(on: loop, to: listener.address)
        let echo = ByteSink()
        echo.start(client)
        client.write(Array("hello".utf8))
        try await echo.wait(for: 5)
        #expect(echo.bytes == Array("hello".utf8))

        let cat = try await ChildProcess.spawn(on: loop, ProcessOptions(executable: "cat"))
        let out = ByteSink()
        out.start(try #require(cat.stdout))
        cat.stdin?.write(Array("through cat\n".utf8))
        cat.stdin?.close()
        #expect(try await withTimeout(20, "cat") { await cat.wait() } == .exited(code: 0))
        _ = try await out.closed.wait(10, "cat stdout EOF")
        #expect(String(decoding: out.bytes, as: UTF8.self) == "through cat\n")

        let watcher = try await SignalWatcher.watch(on: loop, signals: [SIGUSR2]) { _ in }
        watcher.cancel()
        client.close(); listener.close()
        await loop.shutdown()
        #expect(loop.closeStatus == 0)
        #expect(await loop.openHandleCount == 0)
    }
}
