//! Keeps the browser's client library, `web-client/public/lib/signaling-client.js`,
//! naming the same messages as this crate.
//!
//! The library keeps its own lists of message types (which frames it relays to
//! the page, which room-wide messages it hands on) and of reactions; a type the
//! protocol gains or the library invents would otherwise go unnoticed until a
//! browser test happens to send it. This test reads the library's source and
//! compares each list to the one the protocol derives, in both directions. The
//! library itself is left as it is: this file is where its lists are checked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

use std::collections::BTreeSet;

use strum::VariantNames;
use vc_protocol::{
    BroadcastKind, CallState, RelayKind, CLIENT_MESSAGE_TYPES, REACTIONS, SERVER_MESSAGE_TYPES,
};

/// Node messages the library takes as the reply to one of its requests, by the
/// request's `id`, so that its source never names them.
const REPLIES: [&str; 4] = ["joined", "resumed", "left", "pong"];

fn read_client() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../web-client/public/lib/signaling-client.js"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The single-quoted strings of `text`, in order.
fn quoted(text: &str) -> Vec<String> {
    text.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The strings of the array literal that follows `declaration` (up to the first
/// `]`), for `const NAME = [...]` and `Object.freeze([...])` alike.
fn string_array(source: &str, declaration: &str) -> Vec<String> {
    let (_, rest) = source
        .split_once(declaration)
        .unwrap_or_else(|| panic!("signaling-client.js has no `{declaration}`"));
    let open = rest.find('[').expect("an array literal");
    let close = rest[open..].find(']').expect("a closed array literal") + open;
    quoted(&rest[open + 1..close])
}

/// Every string that follows one of `prefixes` directly, as in `type: 'x'` or
/// `case 'x':`.
fn after_each(source: &str, prefixes: &[&str]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for prefix in prefixes {
        for (at, _) in source.match_indices(prefix) {
            if let Some((name, _)) = source[at + prefix.len()..].split_once('\'') {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|&name| name.to_owned()).collect()
}

#[test]
fn relay_types_are_the_protocols_relay_kinds() {
    let source = read_client();
    assert_eq!(
        string_array(&source, "const RELAY_TYPES ="),
        names(<RelayKind as VariantNames>::VARIANTS),
        "RELAY_TYPES in signaling-client.js against vc_protocol::RelayKind"
    );
}

/// The room-wide deliveries the library hands on: those of `ROOM_TYPES`, and
/// those with a `case` of their own (`peer-state` also updates the member).
#[test]
fn room_types_are_the_protocols_broadcast_kinds() {
    let source = read_client();
    let broadcast: BTreeSet<String> = names(<BroadcastKind as VariantNames>::VARIANTS)
        .into_iter()
        .collect();
    let listed = string_array(&source, "const ROOM_TYPES =");
    let cased = after_each(&source, &["case '"]);
    assert!(
        listed.iter().all(|kind| !cased.contains(kind)),
        "ROOM_TYPES names a type that has a case of its own: {listed:?}"
    );
    let mut delivered: BTreeSet<String> = listed.into_iter().collect();
    delivered.extend(cased.intersection(&broadcast).cloned());
    assert_eq!(
        delivered, broadcast,
        "ROOM_TYPES (and the room-wide types with a case) in signaling-client.js \
         against vc_protocol::BroadcastKind"
    );
}

/// The library sends and reads the call state by these names: a field it
/// misspelt would be ignored by the node and read as false by every client.
#[test]
fn call_state_fields_are_the_protocols() {
    let source = read_client();
    assert_eq!(
        string_array(&source, "export const CALL_STATE_FIELDS ="),
        names(&CallState::FIELDS),
        "CALL_STATE_FIELDS in signaling-client.js against vc_protocol::CallState::FIELDS"
    );
}

#[test]
fn reactions_are_the_protocols() {
    let source = read_client();
    assert_eq!(
        string_array(&source, "export const REACTIONS ="),
        names(&REACTIONS),
        "REACTIONS in signaling-client.js against vc_protocol::REACTIONS"
    );
}

/// Every message the library builds carries `type: '...'`; between them they
/// must be every client message of the protocol, and nothing else.
#[test]
fn the_library_sends_every_client_message_type() {
    let source = read_client();
    let sent = after_each(&source, &["type: '"]);
    let known: BTreeSet<String> = names(CLIENT_MESSAGE_TYPES).into_iter().collect();
    assert_eq!(
        sent, known,
        "`type: '...'` in signaling-client.js against vc_protocol::CLIENT_MESSAGE_TYPES"
    );
}

/// What the library does with each node message: handled by name (a `case`,
/// a comparison, or one of its lists) or taken as a reply. Each node message
/// must be one of these, and each name the library handles a node message.
#[test]
fn the_library_knows_every_server_message_type() {
    let source = read_client();
    let mut handled = after_each(&source, &["case '", "(message.type === '"]);
    handled.extend(string_array(&source, "const RELAY_TYPES ="));
    handled.extend(string_array(&source, "const ROOM_TYPES ="));
    let replies: BTreeSet<String> = names(&REPLIES).into_iter().collect();
    assert!(
        handled.is_disjoint(&replies),
        "a reply is also handled by name: {:?}",
        handled.intersection(&replies).collect::<Vec<_>>()
    );
    handled.extend(replies);
    let known: BTreeSet<String> = names(SERVER_MESSAGE_TYPES).into_iter().collect();
    assert_eq!(
        handled, known,
        "node messages named in signaling-client.js (plus the replies) against \
         vc_protocol::SERVER_MESSAGE_TYPES"
    );
}

/// The extraction itself, on a source laid out like the library's.
#[test]
fn lists_are_read_as_written() {
    let source = "const A = ['x', 'y-z'];\nexport const B = Object.freeze(['👍', '❤️']);\n\
                  send({ type: 'ping', id }); switch (m.type) { case 'error': case 'pong': }";
    assert_eq!(string_array(source, "const A ="), ["x", "y-z"]);
    assert_eq!(string_array(source, "export const B ="), ["👍", "❤️"]);
    assert_eq!(
        after_each(source, &["type: '"]),
        BTreeSet::from(["ping".to_owned()])
    );
    assert_eq!(
        after_each(source, &["case '"]),
        BTreeSet::from(["error".to_owned(), "pong".to_owned()])
    );
}
