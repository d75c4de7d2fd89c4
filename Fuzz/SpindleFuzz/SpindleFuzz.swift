// spindle-fuzz: the fuzz targets of Spindle's parsers of untrusted bytes.
//
// Built by `make fuzz` with `-sanitize=fuzzer,address -DSPINDLE_LIBFUZZER`, it is a libFuzzer
// binary: `SPINDLE_FUZZ_TARGET=<target> spindle-fuzz [libFuzzer flags] CORPUS_DIR`. Built
// normally, it replays inputs (`spindle-fuzz <target> FILE…`) or writes the seed corpus
// (`spindle-fuzz --write-seeds DIR`). Targets: frames, handshake, records, reliable.
import CSpindleFuzz
import SpindleKernel
import SpindleTCP

#if canImport(Glibc)
import Glibc
#endif

#if SPINDLE_LIBFUZZER

/// The target named by SPINDLE_FUZZ_TARGET, read once.
let selectedTarget: FuzzTarget = {
    guard let raw = getenv("SPINDLE_FUZZ_TARGET"), let t = FuzzTarget(rawValue: String(cString: raw)) else {
        complain("spindle-fuzz: set SPINDLE_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue))")
        exit(64)
    }
    return t
}()

/// Runs one input through the selected target (libFuzzer's callback).
@_cdecl("LLVMFuzzerTestOneInput")
public func spindleFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedTarget.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// The executable's entry point (SwiftPM links `main` to it): hands control to libFuzzer.
@_cdecl("SpindleFuzz_main")
public func spindleFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    _ = selectedTarget
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector) { data, size in spindleFuzzOneInput(data, size) }
}

#else

/// Replays inputs through a target, or writes the seed corpus (a build without libFuzzer).
@main
enum SpindleFuzzReplay {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            do {
                try FuzzSeeds.write(to: arguments[1])
            } catch {
                complain("spindle-fuzz: \(error)")
                exit(1)
            }
            exit(0)
        }
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
            complain("usage: spindle-fuzz <\(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|"))> FILE…\n"
                     + "       spindle-fuzz --write-seeds DIR")
            exit(64)
        }
        for path in arguments.dropFirst() {
            guard let bytes = FuzzSeeds.read(path) else {
                complain("spindle-fuzz: cannot read \(path)")
                exit(66)
            }
            bytes.withUnsafeBytes { target.run($0) }
        }
        print("spindle-fuzz: \(arguments.count - 1) input(s) of \(name) ran clean")
    }
}

#endif
