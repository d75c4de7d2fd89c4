import SpindleKernel

extension Engine {
    /// Runs a built-in syscall. Failures are reported with `failOp` (typed reason) and absorb.
    mutating func runSyscall(_ config: SyscallConfig, op: Int, exec slot: Int, inputs: OpInputs) -> DispatchResult {
        let execID = execs[slot].id
        switch config {
        case .sleep(let delay):
            return park(after: delay, OpOutputs(inputs[0] ?? .unit), op: op, slot: slot)
        case .after(let delay, let value):
            return park(after: delay, OpOutputs(value), op: op, slot: slot)
        case .any(let group, let scope):
            switch scope {
            case .execution:
                let latch = SyscallState.AnyLatch(group: group, execution: execID)
                guard context.syscalls.anyFiredInExecution.insert(latch).inserted else { return .absorb }
                execs[slot].latchedGroups.append(group)
            case .node(let window):
                if let rearm = context.syscalls.anyFiredGroups[group], now < rearm { return .absorb }
                context.syscalls.anyFiredGroups[group] = now + window
            }
            return .immediate(OpOutputs(inputs.first ?? .unit))
        case .deadlineMatch(let within):
            let latch = SyscallState.DeadlineLatch(op: op, execution: execID)
            guard context.syscalls.deadlineMatchFired.insert(latch).inserted else { return .absorb }
            execs[slot].latchedOps.append(op)
            var out = OpOutputs()
            out[now <= execs[slot].startedAt + within ? 0 : 1] = inputs.first ?? .unit
            return .immediate(out)
        case .rngU64:
            return .immediate(OpOutputs(.uint(context.syscalls.rng.next())))
        case .incrMetric(let name, let by):
            context.syscalls.counters[name, default: 0] &+= by
            return .immediate(OpOutputs(inputs[0] ?? .unit))
        case .record(let name):
            let v = inputs[0] ?? .unit
            context.syscalls.records.record(name, v)
            return .immediate(OpOutputs(v))
        case .holdStash(let name):
            context.syscalls.hold.stash(name, inputs[0] ?? .unit)
            return .absorb
        case .holdFlush(let name):
            return .immediate(OpOutputs(.list(context.syscalls.hold.flush(name))))
        case .serializeEnqueue(let name):
            guard context.syscalls.serialize.enqueue(name, inputs[0] ?? .unit) else {
                failOp(op, slot, .capacity("queue `\(name)` is full (\(context.syscalls.serialize.capacityPerName) values)"))
                return .absorb
            }
            return .absorb
        case .serializeDequeue(let name):
            guard let v = context.syscalls.serialize.dequeue(name) else { return .absorb }
            return .immediate(OpOutputs(v))
        case .limitAcquire(let name, let max):
            let value = inputs[0] ?? .unit
            let cmd = context.allocateCommand()
            if context.syscalls.limits.acquire(name, max: max, waiter: Int(truncatingIfNeeded: cmd.value)) {
                return .immediate(OpOutputs(value))
            }
            nextPendingKind = .limit(name: name, value: value)
            return .async(cmd)
        case .limitRelease(let name):
            if let waiter = context.syscalls.limits.release(name) {
                let cmd = CommandID(UInt64(truncatingIfNeeded: waiter))
                if let p = pending[cmd], case .limit(_, let value) = p.kind {
                    context.current.completions.append((cmd, .success(OpOutputs(value))))
                }
            }
            return .immediate(OpOutputs(inputs[0] ?? .unit))
        case .emit(let event):
            appEvents.append(AppEvent(name: event, value: inputs[0] ?? .unit, execution: execID, at: now))
            return .absorb
        case .wireCall(let peer, let target, let timeout, let chain, let ports):
            let payload: [UInt8]
            if let ports, case .op(let name) = target {
                var named: [(String, Value)] = []
                named.reserveCapacity(ports.count)
                for (i, port) in ports.enumerated() { if let v = inputs[i] { named.append((port, v)) } }
                payload = WireMessage.encodeNamedCall(op: name, named)
            } else {
                payload = WireMessage.encodeCall(target, [inputs[0] ?? .unit])
            }
            return wireCall(peerName: peer, target: target, timeout: timeout, chain: chain, op: op, slot: slot,
                            payload: payload)
        case .wireSend(let peerName, let site):
            guard let peer = usablePeer(peerName, op: op, slot: slot) else { return .absorb }
            // A one-way fill carries what is left of the execution's deadline, like a call.
            var budget: Duration? = nil
            if let d = execs[slot].deadline {
                guard d > now else {
                    failOp(op, slot, .timeout)
                    return .absorb
                }
                budget = d - now
            }
            send(to: peer, kind: .fill, correlation: 0, budget: budget,
                 payload: WireMessage.encodeCall(.site(site), [inputs[0] ?? .unit]), flags: .oneWay)
            return .absorb
        case .reply:
            guard execs[slot].awaitingReply else {
                failOp(op, slot, .failed("no inbound request to reply to in \(execID)"))
                return .absorb
            }
            reply(slot, [inputs[0] ?? .unit])
            return .absorb
        }
    }

    /// Parks the op on a timer that completes it with `outputs`.
    private mutating func park(after delay: Duration, _ outputs: OpOutputs, op: Int, slot: Int) -> DispatchResult {
        let cmd = context.allocateCommand()
        guard context.time.timers.schedule(at: now + delay, .complete(cmd)) else {
            failOp(op, slot, .capacity("timer heap is full (\(context.time.timers.capacity) timers)"))
            return .absorb
        }
        nextPendingKind = .timer(outputs, due: now + delay)
        return .async(cmd)
    }
}
