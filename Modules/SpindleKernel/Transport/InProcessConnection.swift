/// The two ends of one in-process connection.
final class InProcessConnectionPair: Sendable {
    let id: UInt64
    let clientName: String
    let serverName: String
    let client: InProcessConnection
    let server: InProcessConnection

    init(id: UInt64, clientName: String, serverName: String, fabric: InProcessFabric) {
        self.id = id
        self.clientName = clientName
        self.serverName = serverName
        let c = fabric.configuration
        let toServer = InProcessInbox(highWatermark: c.highWatermark, lowWatermark: c.lowWatermark)
        let toClient = InProcessInbox(highWatermark: c.highWatermark, lowWatermark: c.lowWatermark)
        client = InProcessConnection(local: clientName, remote: serverName, inbound: toClient, outbound: toServer,
                                     pairID: id, fabric: fabric)
        server = InProcessConnection(local: serverName, remote: clientName, inbound: toServer, outbound: toClient,
                                     pairID: id, fabric: fabric)
    }

    /// Breaks the connection under both ends: pending envelopes are lost, both get `reason`.
    func breakBoth(_ reason: CloseReason) {
        client.terminate(reason)
        server.terminate(reason)
    }
}

/// One end of an in-process connection.
final class InProcessConnection: TransportConnection {
    let localName: String
    let remoteName: String
    let localAddress: Address
    let remoteAddress: Address
    /// Envelopes for this end's handler.
    let inbound: InProcessInbox
    /// The peer's inbound.
    let outbound: InProcessInbox
    private let pairID: UInt64
    private let fabric: InProcessFabric

    init(local: String, remote: String, inbound: InProcessInbox, outbound: InProcessInbox,
         pairID: UInt64, fabric: InProcessFabric) {
        localName = local
        remoteName = remote
        localAddress = .inproc(name: local)
        remoteAddress = .inproc(name: remote)
        self.inbound = inbound
        self.outbound = outbound
        self.pairID = pairID
        self.fabric = fabric
    }

    func send(_ envelope: Envelope) throws(TransportError) {
        try fabric.send(envelope, from: self)
    }

    /// Only with `.inline` delivery: the sending thread then drains the peer's inbox itself.
    var deliversDuringSend: Bool { fabric.configuration.delivery == .inline }

    func waitUntilWritable() async throws(TransportError) {
        if let refusal = await outbound.waitUntilWritable() { throw .closed(refusal) }
    }

    /// False while the peer's inbox holds more than its high watermark of undelivered items.
    var isWritable: Bool { outbound.isBelowHighWatermark }

    func start(_ handler: ConnectionHandler) {
        if inbound.start(handler) { fabric.scheduleDrain(inbound) }
    }

    func close() {
        // This end: drop what it has not delivered yet, then `.closedLocally`.
        let a = inbound.close(.closedLocally, refuseSendsWith: .closedByPeer, discardPending: true)
        // The peer: receives what was already sent, then `.closedByPeer`.
        let b = outbound.close(.closedByPeer, refuseSendsWith: .closedLocally, discardPending: false)
        fabric.forget(pairID)
        if a { fabric.scheduleDrain(inbound) }
        if b { fabric.scheduleDrain(outbound) }
    }

    /// Closes this end for `reason`, dropping undelivered envelopes (broken link, shutdown).
    func terminate(_ reason: CloseReason) {
        let a = inbound.close(reason, refuseSendsWith: reason, discardPending: true)
        fabric.forget(pairID)
        if a { fabric.scheduleDrain(inbound) }
    }
}
