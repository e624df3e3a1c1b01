// chat-server: the room — who has joined, and what each line makes the server say.
//
// Everything here runs on the server's one event loop, so the room needs no lock: the order
// in which `say` puts lines into the clients' queues is the order everyone sees.

import AsyncIO

/// One connection: its nick once it joined, and the queue of lines waiting to be written to
/// it (the connection's writer task drains it).
final class ChatClient: @unchecked Sendable {
    // @unchecked Sendable: created and used on the server's one loop only.
    let id: Int
    var nick: String?
    let outbox = Queue<[UInt8]>()
    /// Drops the connection at once (the client is too slow to keep up).
    let abort: () -> Void

    init(id: Int, abort: @escaping () -> Void) {
        self.id = id
        self.abort = abort
    }

    /// Queues `text` for this client. Returns false once its queue is shut down.
    @discardableResult
    func send(_ text: String) -> Bool {
        (try? outbox.putNowait(Array(text.utf8))) != nil
    }
}

/// The joined clients and the chat protocol's rules.
final class ChatRoom: @unchecked Sendable {
    // @unchecked Sendable: used on the server's one loop only.
    static let maxLineBytes = 4096

    let maxQueue: Int
    private var members: [String: ChatClient] = [:]
    /// Set once the server shuts down: no more joins or broadcasts.
    private(set) var closing = false

    init(maxQueue: Int) {
        self.maxQueue = maxQueue
    }

    /// Whether `nick` is 1–32 characters from `[A-Za-z0-9_-]`.
    static func isValidNick(_ nick: [UInt8]) -> Bool {
        guard (1...32).contains(nick.count) else { return false }
        return nick.allSatisfy { byte in
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }

    /// A line as the reader returned it.
    enum Line: Equatable {
        /// A complete line: its text, without the `\n` and a `\r` before it.
        case text([UInt8])
        /// No `\n` at the end: the stream ended inside a line.
        case incomplete
        /// Longer than ``maxLineBytes`` (not counting the `\n`).
        case tooLong
    }

    /// Frames what `readLine()` returned (rule 3's limit and the dropped `\r`).
    static func frame(_ line: [UInt8]) -> Line {
        guard line.last == UInt8(ascii: "\n") else { return .incomplete }
        var text = line.dropLast()
        if text.last == UInt8(ascii: "\r") { text = text.dropLast() }
        return text.count > maxLineBytes ? .tooLong : .text(Array(text))
    }

    /// What happened to a client's line.
    enum Outcome {
        /// Keep reading.
        case stay
        /// Close the connection once its queued lines are written.
        case leave
    }

    /// Handles one line (without its `\n` and a `\r` before it) from `client`.
    func handle(_ line: [UInt8], from client: ChatClient) -> Outcome {
        guard let nick = client.nick else { return join(client, nick: line) }
        let text = String(decoding: line, as: UTF8.self)
        if line == Array("/quit".utf8) {
            client.send("* bye\n")
            leave(client)
            return .leave
        }
        if line == Array("/who".utf8) {
            let names = members.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            return deliver("* online: \(names.joined(separator: " "))\n", to: client) ? .stay : .leave
        }
        if line.first == UInt8(ascii: "/") {
            return deliver("* unknown command\n", to: client) ? .stay : .leave
        }
        say("\(nick): \(text)\n", except: client)
        return .stay
    }

    private func join(_ client: ChatClient, nick line: [UInt8]) -> Outcome {
        guard !closing else { return .leave }
        guard Self.isValidNick(line) else {
            client.send("* invalid nick\n")
            return .leave
        }
        let nick = String(decoding: line, as: UTF8.self)
        guard members[nick] == nil else {
            client.send("* nick in use\n")
            return .leave
        }
        members[nick] = client
        client.nick = nick
        client.send("* welcome \(nick), \(members.count) online\n")
        say("* \(nick) joined\n", except: client)
        return .stay
    }

    /// The joined clients by nick (tests and the fuzzer).
    var joined: [String: ChatClient] { members }

    /// Takes `client` out of the room (if it had joined) and tells the others. Idempotent.
    func leave(_ client: ChatClient) {
        guard let nick = client.nick, members[nick] === client else { return }
        members[nick] = nil
        if !closing {
            say("* \(nick) left\n", except: client)
        }
    }

    /// Queues `text` for `client`; a client whose queue grows past `maxQueue` lines (its
    /// socket takes no more) is dropped, and the others told. Returns false if it was.
    /// Every line a client is sent while it may keep talking goes through here, so a client
    /// that never reads cannot grow the server's memory with its own commands either.
    @discardableResult
    private func deliver(_ text: String, to client: ChatClient) -> Bool {
        client.send(text)
        guard client.outbox.count > maxQueue else { return true }
        client.outbox.shutdown(immediate: true)
        client.abort()
        leave(client)
        return false
    }

    /// Queues `text` for every joined client but `sender` (see ``deliver(_:to:)``).
    private func say(_ text: String, except sender: ChatClient?) {
        for member in members.values where member !== sender {
            deliver(text, to: member)
        }
    }

    /// The server is shutting down: every joined client gets a last line, and every queue
    /// closes once written.
    func shutDown(_ everyone: [ChatClient]) {
        closing = true
        for client in everyone {
            if client.nick != nil { client.send("* server shutting down\n") }
            client.outbox.shutdown()
        }
        members = [:]
    }
}
