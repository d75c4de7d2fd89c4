import SpindleKernel

extension Engine {
    /// Fires op `op` of execution `slot`: takes its inputs, dispatches, applies the result.
    mutating func fire(_ op: Int, exec slot: Int, _ p: InstalledProgram) {
        execs[slot].outstanding -= 1
        execs[slot].queued[op] = false
        execs[slot].required[op] = 0
        execs[slot].groupsSatisfied[op] = 0
        let groupCount = Int(p.opGroupCount[op])
        if groupCount > 0 {
            let g0 = p.opGroupBase[op]
            for g in g0..<(g0 + groupCount) { execs[slot].groupHits[g] = 0 }
        }
        let count = p.opInputCount[op]
        var inputs = OpInputs(count: count, ports: p.opPorts[op])
        let base = p.opSlotBase[op]
        // Move each value out of its slot (leaving nil): no copy, no retain/release pair.
        for i in 0..<count {
            if let v = execs[slot].slots[base + i].take() { inputs[i] = v }
        }

        if p.opIsAsync[op] && pending.count >= configuration.maxPendingAsync {
            failOp(op, slot, .cooldown)
            settle(slot)
            return
        }

        let execID = execs[slot].id
        if context.current.execution != execID {
            context.current.execution = execID
            context.current.inbound = execs[slot].inbound
        }
        context.current.opIndex = op
        if case .component = nextPendingKind {} else { nextPendingKind = .component }
        let result: DispatchResult
        let ci = p.opComponent[op]
        if ci >= 0 {
            // Reset once after the frontier loop (`endDispatch`), not after every op.
            if context.siblings.dispatching != ci { context.siblings.dispatching = ci }
            result = p.components[ci].dispatch(op: p.opComponentOp[op], inputs: inputs, context: context)
        } else if case .syscall(let config) = p.ops[op].target {
            result = runSyscall(config, op: op, exec: slot, inputs: inputs)
        } else {
            result = .absorb
        }

        switch result {
        case .immediate(let outputs):
            writeOutputs(op, slot, outputs, p)
        case .async(let cmd):
            if pending[cmd] != nil {
                // The component reused a command another op still waits on: overwriting it
                // would strand that op's execution.
                failOp(op, slot, .commandInUse(cmd))
            } else if pending.count >= configuration.maxPendingAsync {
                // Ops not declared async are only caught here, after they started their work;
                // its completion will be ignored and counted.
                failOp(op, slot, .cooldown)
            } else {
                var deadline: MonotonicInstant
                switch nextPendingKind {
                case .timer(_, let due):
                    // A timer completes its op when it matures: its deadline is the timer's
                    // (a 60 s Sleep is not cut by the default async deadline).
                    deadline = due
                case .wire(let request, _):
                    deadline = context.net.requests.entry(request)?.expiresAt
                        ?? now + (p.ops[op].timeout ?? configuration.defaultAsyncDeadline)
                default:
                    deadline = now + (p.ops[op].timeout ?? configuration.defaultAsyncDeadline)
                }
                if let d = execs[slot].deadline, d < deadline { deadline = d }
                pending[cmd] = PendingOp(op: op, exec: slot, execID: execID, kind: nextPendingKind, deadline: deadline)
                _ = deadlines.schedule(at: deadline, cmd)
                execs[slot].outstanding += 1
            }
        case .failed(let detail):
            failOp(op, slot, .failed(Ingress.truncate(detail, toBytes: configuration.failureDetailCap)))
        }
        if !context.current.completions.isEmpty { applySameCycleCompletions() }
        if execs[slot].outstanding == 0 { settle(slot) }
    }

    /// Marks that no op is dispatching any more (after a run of `fire`s).
    mutating func endDispatch() {
        context.current.opIndex = -1
        context.siblings.dispatching = -1
    }

    /// Applies completions a dispatch recorded through the context.
    mutating func applySameCycleCompletions() {
        while !context.current.completions.isEmpty {
            let batch = context.current.completions
            context.current.completions.removeAll(keepingCapacity: true)
            for (cmd, result) in batch { applyCompletion(cmd, result) }
        }
    }

    /// Completes (or fails) pending command `cmd`; unknown commands are ignored and counted.
    mutating func applyCompletion(_ cmd: CommandID, _ result: Result<OpOutputs, OpFailureReason>) {
        guard let p = pending.removeValue(forKey: cmd) else {
            context.bus.publish(.unknownCompletion(cmd))
            return
        }
        guard execs[p.exec].inUse, execs[p.exec].id == p.execID else { return }
        execs[p.exec].outstanding -= 1
        var downPeer: NodeID?
        switch p.kind {
        case .wire(let request, let peer):
            // A failure here is local (deadline, cap, peer down, cancel); a reply already
            // cleaned up in `receive`.
            if context.net.requests.finish(request) != nil {
                context.peers.gate.release(peer)
                if case .failure(.timeout) = result {
                    context.peers.backoff.recordFailure(peer, now: now)
                    if context.peers.governor.observeFailure(peer) == .down { downPeer = peer }
                }
            }
        case .limit(let name, _):
            if case .failure = result { context.syscalls.limits.cancel(name, waiter: Int(truncatingIfNeeded: cmd.value)) }
        case .component, .timer:
            break
        }
        if execs[p.exec].cancelled {
            // Nothing of a cancelled execution fires any more.
            if case .failure(let reason) = result { recordFailure(p.op, p.exec, reason) }
        } else {
            switch result {
            case .success(let outputs):
                writeOutputs(p.op, p.exec, outputs, program!)
            case .failure(let reason):
                failOp(p.op, p.exec, reason)
            }
        }
        settle(p.exec)
        if let downPeer { declareDown(downPeer) }
    }

    /// Writes an op's outputs to their sites; answers the inbound request when this op is the
    /// execution's reply op.
    mutating func writeOutputs(_ op: Int, _ slot: Int, _ outputs: OpOutputs, _ p: InstalledProgram) {
        if execs[slot].replyOp == op && execs[slot].awaitingReply {
            var values: [Value] = []
            for i in 0..<outputs.count { values.append(outputs[i] ?? .unit) }
            reply(slot, values)
        }
        let n = min(outputs.count, p.opOutputCount[op])
        let base = p.opOutputBase[op]
        var i = 0
        while i < n {
            if let v = outputs[i] {
                let site = p.outputSiteFlat[base + i]
                if site >= 0 { writeSite(site, v, exec: slot, p) }
            }
            i += 1
        }
    }

    /// Publishes `opFailed`, writes the text to the op's `error` site, answers a waiting
    /// requester with the error when this op was to reply.
    mutating func failOp(_ op: Int, _ slot: Int, _ reason: OpFailureReason) {
        let p = program!
        let cop = p.ops[op]
        recordFailure(op, slot, reason)
        if execs[slot].replyOp == op && execs[slot].awaitingReply { replyError(slot, "op `\(cop.info.name)` \(reason)") }
        if cop.errorSite >= 0 { writeSite(cop.errorSite, .string(reason.description), exec: slot, p) }
    }

    /// Counts a failure of op `op` in execution `slot` and publishes it.
    mutating func recordFailure(_ op: Int, _ slot: Int, _ reason: OpFailureReason) {
        let failure = OpFailure(op: program!.ops[op].info.name, execution: execs[slot].id, reason: reason)
        execs[slot].failures += 1
        execs[slot].errors.append(failure)
        context.bus.publish(.opFailed(failure))
    }
}
