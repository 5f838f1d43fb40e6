//! Keeps `docs/protocol.md` and the `vc-protocol` crate in step.
//!
//! Client authors copy the examples of the protocol document, so an example the
//! node would refuse is a bug report waiting to happen. This test reads every JSON
//! example of the document and parses it with the same code the node uses, checks
//! that every message type has an example, and that the error table lists every
//! error code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

use std::collections::BTreeSet;

use serde_json::value::RawValue;
use serde_json::Value;
use vc_protocol::{
    parse_client_message, ErrorCode, ServerMessage, CLIENT_MESSAGE_TYPES, SERVER_MESSAGE_TYPES,
};

/// One JSON example of the document.
struct Example {
    /// 1-based line of the document where the example starts.
    line: usize,
    /// The example exactly as written.
    text: String,
}

fn read_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every JSON value inside the document's ```json blocks. A block may hold one
/// object per line or one object spread over several lines: reading the block as
/// a stream of JSON values handles both, and keeps each value's own text.
fn examples(doc: &str) -> Vec<Example> {
    let mut found = Vec::new();
    let mut lines = doc.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        if line.trim_end() != "```json" {
            continue;
        }
        let first_line = index + 2;
        let mut block = Vec::new();
        let mut closed = false;
        for (_, line) in lines.by_ref() {
            if line.trim_end() == "```" {
                closed = true;
                break;
            }
            block.push(line);
        }
        assert!(closed, "protocol.md:{}: unclosed ```json block", index + 1);
        let block = block.join("\n");
        let mut stream = serde_json::Deserializer::from_str(&block).into_iter::<&RawValue>();
        loop {
            let start = stream.byte_offset();
            match stream.next() {
                None => break,
                Some(Ok(raw)) => {
                    // The value starts after any white space that preceded it.
                    let skipped = block[start..].len() - block[start..].trim_start().len();
                    let line = first_line + block[..start + skipped].matches('\n').count();
                    found.push(Example {
                        line,
                        text: raw.get().to_owned(),
                    });
                }
                Some(Err(e)) => panic!(
                    "protocol.md:{}: the ```json block is not valid JSON: {e}",
                    first_line + e.line() - 1
                ),
            }
        }
    }
    found
}

/// The codes in the first column of the table under `### error`.
fn error_table_codes(doc: &str) -> BTreeSet<String> {
    let section = doc
        .split_once("\n### error\n")
        .map(|(_, rest)| rest)
        .expect("protocol.md has a \"### error\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|line| line.strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .filter_map(|cell| {
            let cell = cell.trim();
            cell.strip_prefix('`')?.strip_suffix('`').map(str::to_owned)
        })
        .collect()
}

#[test]
fn every_example_parses_and_every_message_type_has_one() {
    let doc = read_doc();
    let examples = examples(&doc);
    assert!(!examples.is_empty(), "protocol.md has no ```json examples");

    let mut failures = Vec::new();
    let mut client_seen = BTreeSet::new();
    let mut server_seen = BTreeSet::new();
    for example in &examples {
        let at = format!("protocol.md:{}", example.line);
        let value: Value = serde_json::from_str(&example.text).expect("checked by examples()");
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            failures.push(format!("{at}: no string \"type\": {}", example.text));
            continue;
        };
        // offer, answer, candidate, app-data, chat and reaction exist in both
        // directions: what the node delivers carries `from`, what the client
        // sends does not.
        let relayed = value.get("from").is_some() && value.get("to").is_none();
        if CLIENT_MESSAGE_TYPES.contains(&kind) && !relayed {
            match parse_client_message(&example.text) {
                Ok(message) if message.type_name() == kind => {
                    client_seen.insert(kind.to_owned());
                }
                Ok(message) => failures.push(format!(
                    "{at}: \"{kind}\" parsed as a client \"{}\"",
                    message.type_name()
                )),
                Err(e) => failures.push(format!(
                    "{at}: client \"{kind}\" refused ({}: {}): {}",
                    e.code, e.message, example.text
                )),
            }
        } else {
            match serde_json::from_str::<ServerMessage>(&example.text) {
                Ok(message) => {
                    let name = message.type_name();
                    if name == kind {
                        server_seen.insert(kind.to_owned());
                    } else {
                        failures.push(format!("{at}: \"{kind}\" parsed as a node \"{name}\""));
                    }
                }
                Err(e) => failures.push(format!(
                    "{at}: node \"{kind}\" does not parse ({e}): {}",
                    example.text
                )),
            }
        }
    }

    for &kind in CLIENT_MESSAGE_TYPES {
        if !client_seen.contains(kind) {
            failures.push(format!("no valid example of the client message \"{kind}\""));
        }
    }
    for &kind in SERVER_MESSAGE_TYPES {
        if !server_seen.contains(kind) {
            failures.push(format!("no valid example of the node message \"{kind}\""));
        }
    }
    assert!(
        failures.is_empty(),
        "docs/protocol.md disagrees with vc-protocol:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn the_error_table_lists_exactly_the_error_codes() {
    let doc = read_doc();
    let listed = error_table_codes(&doc);
    let known: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|code| code.as_str().to_owned())
        .collect();
    let missing: Vec<_> = known.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "error codes missing from the table of protocol.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "the table of protocol.md lists codes the protocol does not have: {unknown:?}"
    );
}

/// The extraction itself: both layouts of a block, and line numbers that point
/// at the example, so that a failure message can be acted on.
#[test]
fn examples_are_found_in_both_block_layouts() {
    let doc = "intro\n```json\n{\"type\": \"leave\"}\n{\"type\": \"left\"}\n```\ntext\n```json\n{\"type\": \"welcome\",\n \"protocol\": 1}\n```\n```\n{\"type\": \"not-json-block\"}\n```\n";
    let found = examples(doc);
    let lines: Vec<usize> = found.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 8]);
    assert_eq!(found[2].text, "{\"type\": \"welcome\",\n \"protocol\": 1}");
}
