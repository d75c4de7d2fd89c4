import SpindleEventLoop
import SpindleSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The runtime's shared primitives (Modules/SpindleSupport).
@Suite("Support primitives", .timeLimit(.minutes(1)))
struct SupportTests {
    // MARK: Locks and waiting

    @Test("Locked serialises updates from many threads")
    func lockedCounts() {
        let counter = Locked(0)
        let threads = (0..<4).map { i in
            try! SpindleThread.start(name: "count-\(i)") {
                for _ in 0..<10_000 { counter.withLock { $0 += 1 } }
            }
        }
        for t in threads { t.join() }
        #expect(counter.value == 40_000)
    }

    @Test("a condition wait ends when signalled, and a timed wait ends at its deadline")
    func conditionLock() {
        let lock = ConditionLock()
        let ready = Atomic<Bool>(false)
        let signaller = try! SpindleThread.start(name: "signal") {
            lock.withLock {
                ready.store(true, ordering: .relaxed)
                lock.signal()
            }
        }
        #expect(lock.wait(timeout: .seconds(30)) { ready.load(ordering: .relaxed) })
        signaller.join()
        let before = monotonicNanoseconds()
        #expect(!lock.wait(timeout: .milliseconds(20)) { false }, "a condition that never holds timed out")
        #expect(monotonicNanoseconds() - before >= 20_000_000, "the timed wait returned before its deadline")
    }

    @Test("spin-then-park wakes a parked waiter, and its timed form gives up at the deadline")
    func parker() {
        let parker = Parker()
        let flag = Atomic<Bool>(false)
        let waiter = try! SpindleThread.start(name: "parked") {
            // No spin: the waiter parks at once, so the wake-up below is what ends its wait.
            spinThenPark(0, on: parker) { flag.load(ordering: .sequentiallyConsistent) }
        }
        flag.store(true, ordering: .sequentiallyConsistent)
        parker.wakeAll()
        waiter.join()
        let woke = flag.load(ordering: .relaxed)
        #expect(woke)
        #expect(!spinThenPark(1_000, on: parker, timeoutNanoseconds: 5_000_000) { false })
        #expect(spinThenPark(1_000, on: parker, timeoutNanoseconds: 5_000_000) { true })
    }

    @Test("BlockingResult hands a value from a Swift task to a blocked thread")
    func blockingResult() async {
        let result = BlockingResult<Int>()
        let got = Atomic<Int>(0)
        let thread = try! SpindleThread.start(name: "blocked") { got.store(result.wait(), ordering: .relaxed) }
        Task { result.finish(42) }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            try! SpindleThread.detached(name: "joiner") {
                thread.join()
                c.resume()
            }
        }
        #expect(got.load(ordering: .relaxed) == 42)
    }

    // MARK: Threads

    @Test("a started thread carries its name and runs its body once; a refused stack size is a typed error")
    func threads() throws {
        let name = Locked("")
        let runs = Atomic<Int>(0)
        let thread = try SpindleThread.start(name: "spindle-named-thread", stackSize: 256 << 10) {
            runs.add(1, ordering: .relaxed)
            var buffer = [UInt8](repeating: 0, count: 32)
            let fd = open("/proc/thread-self/comm", O_RDONLY)
            var n = 0
            if fd >= 0 {
                n = max(0, read(fd, &buffer, 31))
                close(fd)
            }
            name.set(String(decoding: buffer.prefix(n).prefix { $0 != 10 }, as: UTF8.self))
        }
        thread.join()
        #expect(runs.load(ordering: .relaxed) == 1)
        #expect(name.value == "spindle-named-t", "Linux keeps the first 15 bytes of the name")
        #expect(throws: ThreadStartError.self) {
            _ = try SpindleThread.start(name: "huge", stackSize: Int.max) {}
        }
    }

    // MARK: SplitMix64

    @Test("SplitMix64 gives the reference sequence for seed 0 and replays from a seed")
    func splitMix() {
        var rng = SplitMix64(seed: 0)
        #expect([rng.next(), rng.next(), rng.next()] == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F])
        var a = SplitMix64(seed: 99), b = SplitMix64(seed: 99)
        #expect((0..<100).map { _ in a.next() } == (0..<100).map { _ in b.next() })
        var u = SplitMix64(seed: 7)
        #expect((0..<1_000).allSatisfy { _ in (0..<1).contains(u.nextUnit()) })
    }

    // MARK: Byte coding

    @Test("fields written are read back, and the reader ends where the writer did")
    func byteRoundTrip() throws {
        var w = ByteWriter()
        w.u8(7); w.bool(true); w.u16(0xBEEF); w.u32(0xDEAD_BEEF); w.u64(.max); w.i64(-5); w.f64(2.5)
        w.string("héllo"); w.lengthPrefixed([1, 2, 3])
        var r = ByteReader(w.bytes)
        #expect(try r.u8() == 7)
        #expect(try r.bool())
        #expect(try r.u16() == 0xBEEF)
        #expect(try r.u32() == 0xDEAD_BEEF)
        #expect(try r.u64() == .max)
        #expect(try r.i64() == -5)
        #expect(try r.f64() == 2.5)
        #expect(try r.string() == "héllo")
        #expect(Array(try r.lengthPrefixed()) == [1, 2, 3])
        try r.expectEnd()
        #expect(Array(w.bytes.prefix(3)) == [7, 1, 0xEF], "little endian")
    }

    @Test("truncated, oversized, non-UTF-8 and trailing input each fail naming the offset")
    func byteErrors() {
        var r = ByteReader([1, 2, 3], base: 100)
        #expect(throws: ByteReadError(offset: 100, problem: "truncated: expected 4 bytes, 3 left")) { try r.u32() }
        var lengths = ByteReader([0xFF, 0xFF, 0xFF, 0x7F, 1])
        #expect(throws: ByteReadError.self) { try lengths.lengthPrefixed() }
        var text = ByteReader([2, 0, 0, 0, 0xC3, 0x28])
        #expect(throws: ByteReadError(offset: 0, problem: "string is not valid UTF-8")) { try text.string() }
        var flag = ByteReader([2])
        #expect(throws: ByteReadError(offset: 0, problem: "a boolean must be 0 or 1, not 2")) { try flag.bool() }
        var counted = ByteReader([10, 0, 0, 0, 1, 2])
        #expect(throws: ByteReadError(offset: 0, problem: "10 items cannot fit in 2 bytes")) {
            try counted.count(ofItemsAtLeast: 1, what: "items")
        }
        var trailing = ByteReader([1, 2])
        _ = try? trailing.u8()
        #expect(throws: ByteReadError(offset: 1, problem: "1 unexpected bytes after the message")) { try trailing.expectEnd() }
    }

    // MARK: Loop confinement

    @Test("a loop-confined value is usable on its loop")
    func confinedOnItsLoop() async throws {
        let loop = try EventLoop(name: "confined")
        let box = LoopConfined([Int](), on: loop)
        let count = try await loop.submit { box.withValue { v -> Int in v.append(1); return v.count } }
        #expect(count == 1)
        await loop.shutdown()
    }

    #if DEBUG
    @Test("a loop-confined value used from another thread traps in a debug build")
    func confinedOffItsLoopTraps() async {
        // The control: the same value used on its loop exits cleanly, so the failure below is
        // the check's.
        await #expect(processExitsWith: .success) {
            let loop = try EventLoop(name: "confined")
            let box = LoopConfined(0, on: loop)
            try await loop.submit { box.withValue { $0 += 1 } }
            await loop.shutdown()
        }
        await #expect(processExitsWith: .failure) {
            let loop = try EventLoop(name: "confined")
            let box = LoopConfined(0, on: loop)
            box.withValue { $0 += 1 }       // the test's thread, not the loop's
        }
    }

    @Test("a value bound to its loop after creation is checked from then on")
    func boundLaterTraps() async {
        await #expect(processExitsWith: .failure) {
            let loop = try EventLoop(name: "confined")
            let box = LoopConfined(0)
            box.withValue { $0 += 1 }       // not bound yet: unchecked
            box.bind(to: loop)
            box.withValue { $0 += 1 }
        }
    }
    #endif
}
