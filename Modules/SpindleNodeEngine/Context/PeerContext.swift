/// Per-peer state an op may use: concurrency gate, backoff, governor, address book and
/// receiver backpressure.
public struct PeerContext: Sendable {
    public var gate: PeerGate
    public var backoff: BackoffTable
    public var governor: PeerGovernor
    public var addresses: AddressBook
    public var backpressure: BackpressureTracker
}
