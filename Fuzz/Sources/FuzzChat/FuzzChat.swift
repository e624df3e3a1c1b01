//===----------------------------------------------------------------------===//
// swift-asyncio fuzzing — the chat server's line handling (Examples/ChatServer/ChatRoom.swift,
// linked in): clients join, talk, send commands, over-long and incomplete lines, leave, are
// reset, and read their queues or not, in any order.
//
// Checked after every step, against a model of the contract's rules:
// - every queued line is one line: it ends with "\n" and has no other "\n";
// - the room's members are exactly the clients that joined and have not left, been closed or
//   been dropped; their nicks are valid and unique;
// - a client's first line is answered by "* welcome NICK, N online" (N counting it), or by
//   "* invalid nick" / "* nick in use" and it is closed, as the model predicts;
// - nobody ever receives their own "NICK: …" message; "/who" lists the members sorted by bytes;
// - memory is bounded: a member's queue never holds more than --max-queue lines plus the
//   replies that bypass the check (the welcome), and a dropped client's queue is empty.
//===----------------------------------------------------------------------===//

import CFuzzDriver
import FuzzSupport

import AsyncIO

/// One simulated connection.
private final class Connection {
    /// What the server did to it and what it received.
    final class State {
        /// Closed by the server (left, refused) or ended by the peer (EOF, reset).
        var closed = false
        /// Dropped by the room: its queue overflowed (`abort` was called).
        var dropped = false
    }

    let state = State()
    let client: ChatClient
    /// Lines received so far (what its writer took from the queue).
    var received: [String] = []

    var closed: Bool {
        get { state.closed || state.dropped }
        set { state.closed = newValue }
    }

    init(id: Int) {
        let state = self.state
        client = ChatClient(id: id) { state.dropped = true }
    }
}

/// libFuzzer's entry point: a script of steps for up to six clients.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChat(_ start: UnsafeRawPointer?, _ count: Int) -> Int32 {
    var input = FuzzInput(start, count)
    let maxQueue = 1 + input.int(below: 8)
    let room = ChatRoom(maxQueue: maxQueue)
    var connections: [Connection] = []
    var steps = 0
    while !input.isEmpty, steps < 200 {
        steps += 1
        let kind = input.byte() % 8
        if kind == 0 || connections.isEmpty {
            if connections.count < 6 { connections.append(Connection(id: connections.count)) }
            continue
        }
        let connection = connections[input.int(below: connections.count)]
        switch kind {
        case 1, 2, 3:
            // A line: data bytes, maybe a "\r", and "\n" unless the stream ends inside it.
            sendLine(&input, connection, room)
        case 4:
            // A nick-like line (valid more often than random bytes would be).
            let nicks = ["alice", "bob", "carl", "dave", "x", "a-b_C9", String(repeating: "n", count: 32), String(repeating: "n", count: 33), "bad nick", ""]
            deliverLine(Array(nicks[input.int(below: nicks.count)].utf8) + [10], connection, room)
        case 5:
            // A command.
            let commands = ["/who", "/quit", "/nope", "/", "/who ", "/WHO"]
            deliverLine(Array(commands[input.int(below: commands.count)].utf8) + [10], connection, room)
        case 6:
            // The client's writer takes what is queued (the socket accepts it).
            readQueue(connection)
        default:
            // EOF or reset: the server's connection task ends.
            if !connection.closed {
                connection.closed = true
                room.leave(connection.client)
            }
        }
        check(room, connections, maxQueue: maxQueue)
    }
    return 0
}

/// Sends a line made of fuzzed bytes.
private func sendLine(_ input: inout FuzzInput, _ connection: Connection, _ room: ChatRoom) {
    let long = input.byte() % 16 == 0
    var bytes = input.data(long ? 5000 : input.int(below: 64))
    bytes.removeAll { $0 == 10 }   // one line at a time, as readLine returns them
    if input.bool() { bytes.append(13) }
    if input.byte() % 8 != 0 { bytes.append(10) }
    deliverLine(bytes, connection, room)
}

/// What the server's connection task does with one line from `readLine()`.
private func deliverLine(_ line: [UInt8], _ connection: Connection, _ room: ChatRoom) {
    guard !connection.closed else { return }
    let joinedBefore = connection.client.nick != nil
    let membersBefore = room.joined
    switch ChatRoom.frame(line) {
    case .incomplete:
        connection.closed = true
        room.leave(connection.client)
    case .tooLong:
        fuzzCheck(line.count > ChatRoom.maxLineBytes + 1, "a line of \(line.count) bytes was too long")
        connection.client.send("* line too long\n")
        connection.closed = true
        room.leave(connection.client)
    case .text(let text):
        fuzzCheck(text.count <= ChatRoom.maxLineBytes && !text.contains(10), "framed text")
        let outcome = room.handle(text, from: connection.client)
        if !joinedBefore {
            // Rule 1, against the model.
            let valid = ChatRoom.isValidNick(text)
            let nick = String(decoding: text, as: UTF8.self)
            let taken = membersBefore[nick] != nil
            fuzzCheck((outcome == .stay) == (valid && !taken), "join of \(nick): \(outcome)")
            // Joined, unless announcing it overflowed its own queue: another member dropped
            // meanwhile was announced to it too ("* X left"), over a --max-queue of 1.
            if valid && !taken && !connection.state.dropped {
                fuzzCheck(connection.client.nick == nick && room.joined[nick] === connection.client, "\(nick) joined")
                // The welcome comes first; others' departures set off by announcing the join
                // (a member dropped for an overflowing queue) may follow it.
                let first = connection.received.count
                readQueue(connection)
                fuzzCheck(
                    connection.received.count > first
                        && connection.received[first] == "* welcome \(nick), \(membersBefore.count + 1) online\n",
                    "welcome: \(connection.received[first...])")
            }
        }
        if outcome == .leave {
            connection.closed = true
            room.leave(connection.client)
        }
    }
}

/// Takes every queued line, as the connection's writer would.
private func readQueue(_ connection: Connection) {
    while let line = try? connection.client.outbox.getNowait() {
        let text = String(decoding: line, as: UTF8.self)
        fuzzCheck(line.last == 10 && !line.dropLast().contains(10), "one line per item: \(text.debugDescription)")
        if let nick = connection.client.nick {
            fuzzCheck(!text.hasPrefix("\(nick): "), "\(nick) received its own message")
        }
        if text.hasPrefix("* online: ") {
            let names = text.dropFirst(10).dropLast().split(separator: " ").map(String.init)
            fuzzCheck(names == names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }, "/who sorted")
        }
        connection.received.append(text)
    }
}

/// The room's members against the connections.
private func check(_ room: ChatRoom, _ connections: [Connection], maxQueue: Int) {
    var nicks = Set<String>()
    for (nick, member) in room.joined {
        fuzzCheck(member.nick == nick && ChatRoom.isValidNick(Array(nick.utf8)), "member \(nick)")
        fuzzCheck(nicks.insert(nick).inserted, "\(nick) twice")
        guard let connection = connections.first(where: { $0.client === member }) else {
            fuzzCheck(false, "member \(nick) has no connection")
            return
        }
        fuzzCheck(!connection.closed, "\(nick) is closed but still a member")
        // Bounded: --max-queue lines, plus the welcome that bypasses the check.
        fuzzCheck(member.outbox.count <= maxQueue + 1, "\(nick) holds \(member.outbox.count) lines")
    }
    for connection in connections where connection.state.dropped {
        // Dropped: out of the room, its queue emptied and closed at once.
        fuzzCheck(connection.client.outbox.count == 0 && connection.client.outbox.isShutDown, "a dropped queue keeps lines")
        if let nick = connection.client.nick {
            fuzzCheck(room.joined[nick] !== connection.client, "dropped \(nick) is still a member")
        }
    }
}

/// The executable's entry point (SwiftPM names it `FuzzChat_main`): libFuzzer's driver.
@_cdecl("FuzzChat_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzChat(data.map(UnsafeRawPointer.init), size) }
}
