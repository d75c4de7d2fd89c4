/// Read access to the other components installed on the node, by slot name. The component
/// that is dispatching cannot reach itself through it.
public struct SiblingView {
    var components: [any Component] = []
    var slotNames: [String] = []
    var slots: [String: Int] = [:]
    /// Index of the component dispatching now (-1 outside a component dispatch).
    var dispatching: Int = -1

    /// The component at `slot`.
    /// - Throws: `.notBound` when nothing is there, `.selfAccess` for the dispatching component.
    public func component(at slot: String) throws(DependencyError) -> any Component {
        guard let i = slots[slot] else { throw .notBound(slot: slot, requiredBy: callerName) }
        guard i != dispatching else { throw .selfAccess(slot: slot) }
        return components[i]
    }

    /// The component at `slot` as a `T`.
    /// - Throws: `.notBound`, `.selfAccess`, or `.typeMismatch` when it is not a `T`.
    public func component<T>(at slot: String, as type: T.Type) throws(DependencyError) -> T {
        let c = try component(at: slot)
        guard let t = c as? T else {
            throw .typeMismatch(slot: slot, expected: String(describing: type), found: String(describing: Swift.type(of: c)))
        }
        return t
    }

    /// Slot names with a component installed, in installation order.
    public var installedSlots: [String] { slotNames }

    private var callerName: String { dispatching >= 0 ? slotNames[dispatching] : "host" }
}
