/// Per-peer state an op may use: concurrency gate, backoff, governor, address book and
/// receiver backpressure.
struct PeerContext: Sendable {
    var gate: PeerGate
    var backoff: BackoffTable
    var governor: PeerGovernor
    var addresses: AddressBook
    var backpressure: BackpressureTracker
}
