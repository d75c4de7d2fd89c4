import SpindleNodeEngine

struct Basket: Codable { var item: String; var quantity: Int; var note: String? }
struct Bill: Codable { var total: Double }

/// Prices baskets: a typed port in, a typed output out.
final class Cashier: Component {
    let signatures = [OpSignature("price", inputs: [PortSpec("basket", .record)], outputs: [PortSpec("bill", .record)])]
    func dispatch(op: Int, inputs: OpInputs, context: NodeContext) -> DispatchResult {
        do {
            let basket = try inputs.value(of: Basket.self, at: "basket")   // InputBindingError names op and port
            return .immediate(try OpOutputs(encoding: Bill(total: Double(basket.quantity) * 2.5)))
        } catch {
            return .failed("\(error)")
        }
    }
}

/// On a host whose node sends site `basket` to a peer's `price` op (or runs it itself).
func bill(for basket: Basket, from driver: NodeDriver) async throws -> Bill {
    try await driver.call(site: "basket", value: basket)
}
