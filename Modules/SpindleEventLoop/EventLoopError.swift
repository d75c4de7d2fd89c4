import CLibUV

/// A failure of the event loop or one of its handles, carrying libuv's error name.
///
/// `code` is libuv's (negative errno) error code, or 0 for failures Spindle detects itself;
/// `name` is libuv's short name (`"ECONNREFUSED"`) or Spindle's own (`"ELOOPSHUTDOWN"`);
/// `operation` says what was attempted and on what (`"connect to tcp://127.0.0.1:9"`).
///
/// Two errors are equal when their `code` and `name` are equal: `operation` and `message`
/// are context for people, so `error == .noSuchProcess` matches any ESRCH failure.
public struct EventLoopError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libuv error code (negative errno); 0 when the failure does not come from libuv.
    public var code: Int32
    /// libuv error name (`uv_err_name`), e.g. `"ECONNREFUSED"`.
    public var name: String
    /// What was attempted, e.g. `"connect to tcp://127.0.0.1:9"`.
    public var operation: String
    /// `uv_strerror` text or Spindle's own explanation.
    public var message: String

    public init(code: Int32, name: String, operation: String, message: String) {
        self.code = code
        self.name = name
        self.operation = operation
        self.message = message
    }

    /// Wraps a libuv status code (negative) for `operation`.
    public init(uvCode: Int32, operation: String) {
        self.code = uvCode
        self.name = String(cString: uv_err_name(uvCode))
        self.operation = operation
        self.message = String(cString: uv_strerror(uvCode))
    }

    public var description: String { "\(operation): \(name) (\(message))" }

    public static func == (lhs: EventLoopError, rhs: EventLoopError) -> Bool {
        lhs.code == rhs.code && lhs.name == rhs.name
    }

    /// The peer actively refused the connection (nothing listens there).
    public var isConnectionRefused: Bool { code == UV_ECONNREFUSED.rawValue }
    /// The peer closed its side of the stream.
    public var isEOF: Bool { code == UV_EOF.rawValue }
    /// The process no longer exists (it has exited and been reaped).
    public var isNoSuchProcess: Bool { code == UV_ESRCH.rawValue }
    /// The loop was shut down before or while the operation ran.
    public var isLoopShutDown: Bool { code == 0 && name == EventLoopError.loopShutDownName }
    /// Something did not happen in time: a connect past its connect timeout, or a TCP
    /// connection whose peer stopped acknowledging (keepalive or `TCP_USER_TIMEOUT`).
    public var isTimedOut: Bool { code == UV_ETIMEDOUT.rawValue }
    /// A graceful close still had unwritten bytes at its close deadline; the socket was
    /// closed hard.
    public var isCloseDeadlinePassed: Bool { code == 0 && name == EventLoopError.closeDeadlineName }

    static let loopShutDownName = "ELOOPSHUTDOWN"
    static let closeDeadlineName = "ECLOSEDEADLINE"

    /// Any ESRCH failure: the process is gone. Compare with `==`.
    public static let noSuchProcess = EventLoopError(
        code: UV_ESRCH.rawValue, name: "ESRCH", operation: "signal process", message: "no such process")

    /// Any failure because the loop is shut down. Compare with `==`.
    public static let loopShutDown = EventLoopError(
        code: 0, name: loopShutDownName, operation: "use event loop", message: "the event loop has been shut down")

    /// Any timeout (ETIMEDOUT). Compare with `==`.
    public static let timedOut = EventLoopError(
        code: UV_ETIMEDOUT.rawValue, name: "ETIMEDOUT", operation: "wait", message: "timed out")

    /// Any graceful close cut short by its deadline. Compare with `==`.
    public static let closeDeadlinePassed = EventLoopError(
        code: 0, name: closeDeadlineName, operation: "close a stream",
        message: "the close deadline passed with bytes unwritten")

    /// The loop-shut-down error for a named loop and operation.
    static func loopShutDown(_ loopName: String, _ operation: String) -> EventLoopError {
        EventLoopError(code: 0, name: loopShutDownName, operation: "\(operation) on loop \"\(loopName)\"",
                       message: "the event loop has been shut down")
    }

    /// Throws a wrapped error when `status` is a libuv failure (negative).
    @inline(__always)
    static func check(_ status: Int32, _ operation: @autoclosure () -> String) throws(EventLoopError) {
        if status < 0 { throw EventLoopError(uvCode: status, operation: operation()) }
    }
}
