import Histogram
import Spindle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One suite of benchmarks: a name (the command-line word) and a body that reports results.
struct BenchSuite: Sendable {
    var name: String
    /// Runs only when named on the command line, not in a run of all suites (the cluster
    /// suite: it makes and removes network namespaces).
    var onlyWhenNamed = false
    var run: @Sendable (BenchReporter) async throws -> Void
}

/// One measured figure, optionally beside its baseline from the same run.
struct BenchResult: Sendable {
    var suite: String
    var benchmark: String
    var value: Double
    var unit: String
    var baseline: String? = nil
    var baselineValue: Double? = nil
    /// Whether a larger value is better (throughput) or worse (latency). The reported ratio is
    /// oriented so that higher is always better for Spindle.
    var higherIsBetter: Bool

    var ratio: Double? {
        guard let b = baselineValue, b > 0, value > 0 else { return nil }
        return higherIsBetter ? value / b : b / value
    }
}

/// Prints results as a table, or one JSON object per line with `--json`:
/// `{"suite","benchmark","value","unit","baseline","baseline_value","ratio"}`.
final class BenchReporter: Sendable {
    let json: Bool

    init(json: Bool) { self.json = json }

    func printHeader() {
        guard !json else { return }
        print("spindle-bench — release build, \(machineDescription())")
        print(pad("suite", 10) + pad("benchmark", 46) + pad("value", 16) + pad("baseline", 30) + "ratio")
    }

    func printFooter() {
        guard !json else { return }
        print("ratio = Spindle ÷ baseline, oriented so that higher is better")
    }

    /// Prints a progress note (never in JSON mode).
    func note(_ text: String) {
        guard !json else { return }
        print("  · \(text)")
    }

    func report(_ r: BenchResult) {
        if json {
            var fields = [
                "\"suite\":\(quote(r.suite))",
                "\"benchmark\":\(quote(r.benchmark))",
                "\"value\":\(number(r.value))",
                "\"unit\":\(quote(r.unit))",
            ]
            fields.append("\"baseline\":" + (r.baseline.map(quote) ?? "null"))
            fields.append("\"baseline_value\":" + (r.baselineValue.map(number) ?? "null"))
            fields.append("\"ratio\":" + (r.ratio.map(number) ?? "null"))
            print("{" + fields.joined(separator: ",") + "}")
        } else {
            let base = r.baseline.map { "\($0) \(fmt(r.baselineValue ?? 0))" } ?? "—"
            let ratio = r.ratio.map { fmt($0) + "×" } ?? "—"
            print(pad(r.suite, 10) + pad(r.benchmark, 46) + pad("\(fmt(r.value)) \(r.unit)", 16)
                  + pad(base, 30) + ratio)
        }
        fflush(nil)
    }

    private func quote(_ s: String) -> String {
        var out = "\""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out + "\""
    }

    private func number(_ v: Double) -> String { v.isFinite ? "\(v)" : "null" }
}

/// Formats a figure with 3 significant digits.
func fmt(_ v: Double) -> String {
    if v == 0 { return "0" }
    let mag = abs(v)
    let decimals = mag >= 100 ? 0 : mag >= 10 ? 1 : mag >= 1 ? 2 : 3
    var s = String(Int64((v * pow10(decimals)).rounded()))
    if decimals > 0 {
        let neg = s.hasPrefix("-")
        if neg { s.removeFirst() }
        while s.count <= decimals { s = "0" + s }
        s.insert(".", at: s.index(s.endIndex, offsetBy: -decimals))
        if neg { s = "-" + s }
    }
    return s
}

private func pow10(_ n: Int) -> Double {
    var r = 1.0
    for _ in 0..<n { r *= 10 }
    return r
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}

/// Describes the machine: CPU model, cores and kernel.
func machineDescription() -> String {
    var model = "unknown CPU"
    if let f = fopen("/proc/cpuinfo", "r") {
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, 512, f) != nil {
            let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if s.hasPrefix("model name") {
                model = String(s.split(separator: ":", maxSplits: 1).last ?? "").trimmingSpaces()
                break
            }
        }
    }
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    return "\(model), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, Linux \(release)"
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" { s.removeLast() }
        return String(s)
    }
}

/// Measures `body` `iterations` times after `warmup` runs; returns seconds per iteration (the
/// median of `rounds` rounds, to damp noise on a shared machine).
func measure(iterations: Int, rounds: Int = 5, warmup: Int = 1, _ body: (Int) throws -> Void) rethrows -> Double {
    for _ in 0..<warmup { try body(iterations) }
    var samples: [Double] = []
    for _ in 0..<rounds {
        let t0 = SystemClock().now()
        try body(iterations)
        let dt = SystemClock().now() - t0
        samples.append(Double(dt.nanosecondsClamped) / 1e9 / Double(iterations))
    }
    return median(samples)
}

/// Async variant of `measure`.
func measureAsync(iterations: Int, rounds: Int = 5, warmup: Int = 1,
                  _ body: (Int) async throws -> Void) async rethrows -> Double {
    for _ in 0..<warmup { try await body(iterations) }
    var samples: [Double] = []
    for _ in 0..<rounds {
        let t0 = SystemClock().now()
        try await body(iterations)
        let dt = SystemClock().now() - t0
        samples.append(Double(dt.nanosecondsClamped) / 1e9 / Double(iterations))
    }
    return median(samples)
}

/// Keeps a value alive and observable so the optimiser cannot drop the work that made it.
@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// Writes a line to standard error.
func printError(_ text: String) {
    var line = Array((text + "\n").utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

/// The middle value (the upper middle of an even count); 0 for none.
func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    return values.sorted()[values.count / 2]
}

/// Single-operation latencies in an HdrHistogram (3 significant digits, up to 10 minutes).
struct Latencies {
    private(set) var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000_000, numberOfSignificantValueDigits: .three)

    init() {}

    init(nanoseconds: some Sequence<UInt64>) {
        for ns in nanoseconds { record(nanoseconds: ns) }
    }

    mutating func record(nanoseconds ns: UInt64) {
        _ = histogram.record(min(max(ns, 1), histogram.highestTrackableValue))
    }

    mutating func record(_ d: Duration) { record(nanoseconds: UInt64(max(0, d.nanosecondsClamped))) }

    var count: UInt64 { histogram.totalCount }

    /// The value at `percentile` (0–100), in microseconds.
    func microseconds(at percentile: Double) -> Double {
        Double(histogram.valueAtPercentile(percentile)) / 1_000
    }
}

extension BenchReporter {
    /// Reports a latency benchmark as two rows, p50 and p99 (microseconds, lower is better),
    /// each beside the baseline's same percentile when there is one.
    func reportLatency(suite: String, benchmark: String, _ spindle: Latencies,
                       baseline: (name: String, latencies: Latencies)? = nil) {
        reportLatency(suite: suite, benchmark: benchmark, spindle,
                      baseline: baseline.map { ($0.name, $0.latencies.microseconds(at: 50), $0.latencies.microseconds(at: 99)) })
    }

    /// As above, with the baseline's p50 and p99 given in microseconds.
    func reportLatency(suite: String, benchmark: String, _ spindle: Latencies,
                       baseline: (name: String, p50: Double, p99: Double)?) {
        for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
            report(BenchResult(suite: suite, benchmark: "\(benchmark) \(label)", value: spindle.microseconds(at: p), unit: "µs",
                               baseline: baseline?.name, baselineValue: label == "p50" ? baseline?.p50 : baseline?.p99,
                               higherIsBetter: false))
        }
    }
}
