import SpindleKernel
import Synchronization

/// The `call`s waiting for their executions, by execution id.
struct CallRegistry {
    enum Entry {
        /// Registered; the continuation is not installed yet.
        case pending
        /// Cancelled before the continuation was installed.
        case cancelled
        case waiting(CheckedContinuation<Result<FinishedExecution, NodeCallError>, Never>)
    }

    var entries: [ExecID: Entry] = [:]
    var closed = false
}

extension NodeDriver {
    /// Starts an execution with `value` at `site` and returns its single result: the last
    /// value written to the one sink site it wrote.
    ///
    /// ```swift
    /// let doubled = try await driver.call(site: "ask", value: .int(21))   // .int(42)
    /// ```
    /// Cancelling the awaiting task cancels the execution. The call runs on the caller's
    /// executor (`isolation`, which defaults to the caller's): a caller pinned to the node's
    /// event loop (an actor whose executor is the loop) is resumed on the loop with no hop.
    /// - Parameter timeout: the execution's async ops (and the remote calls it makes, whose
    ///   deadline budget it sets) must finish within it; they fail with `timeout` otherwise.
    /// - Throws: `NodeCallError`: `.failed` with the first op failure (its reason says
    ///   `timeout`, `peerDown`, `overloaded`, `remote`…), `.noResult` / `.ambiguousResult`
    ///   when not exactly one sink was written, `.refused` for an unknown site or mistyped
    ///   value, `.cancelled`, `.rejected` when the ingress is full, `.shutDown`.
    public func call(site: String, value: Value, timeout: Duration? = nil,
                     isolation: isolated (any Actor)? = #isolation) async throws(NodeCallError) -> Value {
        let finished = try await callForSinks(site: site, value: value, timeout: timeout, isolation: isolation)
        do {
            return try finished.singleResult()
        } catch {
            metrics.callsFailed.add(1)
            throw error
        }
    }

    /// `call` with user types: `value` is encoded with `ValueEncoder`, the result decoded as
    /// `Output` with `ValueDecoder`.
    ///
    /// ```swift
    /// let quote: Quote = try await driver.call(site: "price", value: Order(item: "tea", quantity: 2))
    /// ```
    /// - Throws: `NodeCallError` as `call`, plus `.encoding` / `.decoding` naming the field.
    public func call<Input: Encodable, Output: Decodable>(
        site: String, value: Input, as type: Output.Type = Output.self, timeout: Duration? = nil,
        isolation: isolated (any Actor)? = #isolation
    ) async throws(NodeCallError) -> Output {
        let input: Value
        do { input = try Value(encoding: value) } catch { throw .encoding(error) }
        let result = try await call(site: site, value: input, timeout: timeout, isolation: isolation)
        do { return try result.decode(type) } catch {
            metrics.callsFailed.add(1)
            throw .decoding(error)
        }
    }

    /// Starts an execution and returns it when it finishes, with every sink it wrote and its
    /// op failures (which this form does not throw).
    /// - Throws: `NodeCallError.refused`, `.rejected`, `.cancelled`, `.shutDown`.
    public func callForSinks(site: String, value: Value, timeout: Duration? = nil,
                             isolation: isolated (any Actor)? = #isolation) async throws(NodeCallError) -> FinishedExecution {
        let id = ingress.reserveExecution()
        metrics.callsStarted.add(1)
        let registered = calls.withLock { c -> Bool in
            if c.closed { return false }
            c.entries[id] = .pending
            return true
        }
        guard registered else {
            metrics.callsFailed.add(1)
            throw .shutDown
        }
        callsWaiting.add(1, ordering: .relaxed)
        let result = await withTaskCancellationHandler(operation: {
            // Capturing the isolated parameter keeps this closure on the caller's executor: a
            // caller on the node's loop suspends and resumes there, with no hop to the pool.
            _ = isolation
            return await withCheckedContinuation(isolation: isolation) { (c: CheckedContinuation<Result<FinishedExecution, NodeCallError>, Never>) in
                let early: NodeCallError? = calls.withLock { r in
                    switch r.entries[id] {
                    case .cancelled?:
                        r.entries[id] = nil
                        return .cancelled(id)
                    case .pending?:
                        r.entries[id] = .waiting(c)
                        return nil
                    default:
                        return .shutDown
                    }
                }
                if let early {
                    callsWaiting.subtract(1, ordering: .relaxed)
                    c.resume(returning: .failure(early))
                    return
                }
                let onLoop = loop.inEventLoop
                if onLoop { pollsInline = true }
                do throws(IngressError) {
                    try ingress.push(.startReserved(id, site: site, value: value, timeout: timeout))
                } catch {
                    if let waiting = takeCall(id) { waiting.resume(returning: .failure(.rejected(site: site, error))) }
                }
                if onLoop {
                    pollsInline = false
                    pollNowOrSoon()
                }
            }
        }, onCancel: {
            let waiting: CheckedContinuation<Result<FinishedExecution, NodeCallError>, Never>?? = calls.withLock { r in
                switch r.entries[id] {
                case .pending?:
                    r.entries[id] = .cancelled
                    return .some(nil)
                case .waiting(let c)?:
                    r.entries[id] = nil
                    return .some(c)
                default:
                    return nil
                }
            }
            guard let waiting else { return }
            try? ingress.push(.cancel(id))
            if let c = waiting {
                callsWaiting.subtract(1, ordering: .relaxed)
                c.resume(returning: .failure(.cancelled(id)))
            }
        }, isolation: isolation)
        switch result {
        case .success(let finished): return finished
        case .failure(let error):
            metrics.callsFailed.add(1)
            throw error
        }
    }

    /// Removes and returns the continuation of call `id`, if it still waits.
    private func takeCall(_ id: ExecID) -> CheckedContinuation<Result<FinishedExecution, NodeCallError>, Never>? {
        let c: CheckedContinuation<Result<FinishedExecution, NodeCallError>, Never>? = calls.withLock { r in
            guard case .waiting(let c)? = r.entries.removeValue(forKey: id) else { return nil }
            return c
        }
        if c != nil { callsWaiting.subtract(1, ordering: .relaxed) }
        return c
    }

    /// Resumes the calls whose executions finished or were refused in `outcome` (loop thread).
    func resumeCalls(_ outcome: PollOutcome) {
        guard callsWaiting.load(ordering: .relaxed) > 0 else { return }
        var ready: [(CheckedContinuation<Result<FinishedExecution, NodeCallError>, Never>, Result<FinishedExecution, NodeCallError>)] = []
        calls.withLock { r in
            guard !r.entries.isEmpty else { return }
            for f in outcome.finished {
                if case .waiting(let c)? = r.entries[f.id] {
                    r.entries[f.id] = nil
                    ready.append((c, .success(f)))
                }
            }
            for refused in outcome.refusedStarts {
                if case .waiting(let c)? = r.entries[refused.id] {
                    r.entries[refused.id] = nil
                    ready.append((c, .failure(.refused(refused.id, refused.error))))
                }
            }
        }
        guard !ready.isEmpty else { return }
        callsWaiting.subtract(ready.count, ordering: .relaxed)
        for (c, result) in ready { c.resume(returning: result) }
    }

    /// Fails every waiting call with `error` and refuses new ones (shutdown).
    func failAllCalls(_ error: NodeCallError) {
        let waiting = calls.withLock { r -> [CheckedContinuation<Result<FinishedExecution, NodeCallError>, Never>] in
            r.closed = true
            var out: [CheckedContinuation<Result<FinishedExecution, NodeCallError>, Never>] = []
            for (_, e) in r.entries { if case .waiting(let c) = e { out.append(c) } }
            r.entries.removeAll()
            return out
        }
        callsWaiting.subtract(waiting.count, ordering: .relaxed)
        for c in waiting { c.resume(returning: .failure(error)) }
    }
}
