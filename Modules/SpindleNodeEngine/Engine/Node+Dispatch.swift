import SpindleKernel

extension Node {
    /// Fires op `op` of execution `slot`: takes its inputs, dispatches, applies the result.
    func fire(_ op: Int, exec slot: Int) {
        let p = program!
        let e = execs[slot]!
        let cop = p.ops[op]
        e.outstanding -= 1
        e.queued[op] = false
        e.required[op] = 0
        e.groupsSatisfied[op] = 0
        if cop.groupCount > 0 {
            for g in cop.groupBase..<(cop.groupBase + Int(cop.groupCount)) { e.groupHits[g] = 0 }
        }
        var inputs = OpInputs(count: cop.inputCount)
        var s = cop.slotBase
        for i in 0..<cop.inputCount {
            if e.slots[s] != nil {
                inputs[i] = e.slots[s]
                e.slots[s] = nil
            }
            s += 1
        }

        if cop.isAsync && pending.count >= configuration.maxPendingAsync {
            failOp(op, slot, .cooldown)
            settle(slot)
            return
        }

        context.current.opIndex = op
        context.current.execution = e.id
        context.current.inbound = e.inbound
        nextPendingKind = .component
        let result: DispatchResult
        switch cop.target {
        case .component(let ci, let oi):
            context.siblings.dispatching = ci
            result = context.siblings.components[ci].dispatch(op: oi, inputs: inputs, context: context)
            context.siblings.dispatching = -1
        case .syscall(let config):
            result = runSyscall(config, op: op, exec: slot, inputs: inputs)
        }

        switch result {
        case .immediate(let outputs):
            writeOutputs(op, slot, outputs)
        case .async(let cmd):
            var deadline = now + (cop.timeout ?? configuration.defaultAsyncDeadline)
            if case .wire(let request, _) = nextPendingKind, let entry = context.net.requests.entry(request) {
                deadline = entry.expiresAt
            }
            if let d = e.deadline, d < deadline { deadline = d }
            pending[cmd] = PendingOp(op: op, exec: slot, execID: e.id, kind: nextPendingKind, deadline: deadline)
            _ = deadlines.schedule(at: deadline, cmd)
            e.outstanding += 1
        case .failed(let detail):
            failOp(op, slot, .failed(Ingress.truncate(detail, toBytes: configuration.failureDetailCap)))
        }
        context.current.opIndex = -1
        if !context.current.completions.isEmpty { applySameCycleCompletions() }
        settle(slot)
    }

    /// Applies completions a dispatch recorded through the context.
    func applySameCycleCompletions() {
        while !context.current.completions.isEmpty {
            let batch = context.current.completions
            context.current.completions.removeAll(keepingCapacity: true)
            for (cmd, result) in batch { applyCompletion(cmd, result) }
        }
    }

    /// Completes (or fails) pending command `cmd`; unknown commands are ignored and counted.
    func applyCompletion(_ cmd: CommandID, _ result: Result<OpOutputs, OpFailureReason>) {
        guard let p = pending.removeValue(forKey: cmd) else {
            context.bus.publish(.unknownCompletion(cmd))
            return
        }
        guard let e = execs[p.exec], e.id == p.execID else { return }
        e.outstanding -= 1
        switch p.kind {
        case .wire(let request, let peer):
            // A failure here is local (deadline, cap); a reply already cleaned up in `receive`.
            if context.net.requests.finish(request) != nil {
                context.peers.gate.release(peer)
                if case .failure(.timeout) = result {
                    context.peers.backoff.recordFailure(peer, now: now)
                    if context.peers.governor.observeFailure(peer) == .down { context.bus.publish(.peerDown(peer)) }
                }
            }
        case .limit(let name, _):
            if case .failure = result { context.syscalls.limits.cancel(name, waiter: Int(truncatingIfNeeded: cmd.value)) }
        case .component, .timer:
            break
        }
        switch result {
        case .success(let outputs):
            writeOutputs(p.op, p.exec, outputs)
        case .failure(let reason):
            failOp(p.op, p.exec, reason)
        }
        settle(p.exec)
    }

    /// Writes an op's outputs to their sites; answers the inbound request when this op is the
    /// execution's reply op.
    func writeOutputs(_ op: Int, _ slot: Int, _ outputs: OpOutputs) {
        let cop = program!.ops[op]
        let e = execs[slot]!
        if e.replyOp == op && e.awaitingReply {
            var values: [Value] = []
            for i in 0..<outputs.count { values.append(outputs[i] ?? .unit) }
            reply(e, values)
        }
        let n = min(outputs.count, cop.outputSites.count)
        var i = 0
        while i < n {
            if let v = outputs[i] {
                let site = cop.outputSites[i]
                if site >= 0 { writeSite(site, v, exec: slot) }
            }
            i += 1
        }
    }

    /// Publishes `opFailed`, writes the text to the op's `error` site, answers a waiting
    /// requester with the error when this op was to reply.
    func failOp(_ op: Int, _ slot: Int, _ reason: OpFailureReason) {
        let cop = program!.ops[op]
        let e = execs[slot]!
        e.failures += 1
        context.bus.publish(.opFailed(OpFailure(op: cop.info.name, execution: e.id, reason: reason)))
        if e.replyOp == op && e.awaitingReply { replyError(e, "op `\(cop.info.name)` \(reason)") }
        if cop.errorSite >= 0 { writeSite(cop.errorSite, .string(reason.description), exec: slot) }
    }
}
