//! The binary's stdin protocol: one command a line, each answered with one
//! JSON line (`{"ok":true,"command":…}`), and how `--set` arguments read.

use crate::{Data, FleetError};

/// One line of stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `kill <node>`: SIGKILL.
    KillNode(String),
    /// `term <node>`: SIGTERM, the node drains; its exit is reported as an event.
    TermNode(String),
    /// `restart <node>`: kill if running, start again on the same port.
    RestartNode(String),
    /// `kill redis`: SIGKILL every Redis server.
    KillRedis,
    /// `restart redis [--empty]`: with its keys unless `--empty`.
    RestartRedis(Data),
    /// `describe`: the addresses again (pids change on restarts).
    Describe,
}

impl Control {
    pub fn parse(line: &str) -> Result<Control, FleetError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["kill", "redis"] => Ok(Control::KillRedis),
            ["restart", "redis"] => Ok(Control::RestartRedis(Data::Kept)),
            ["restart", "redis", "--empty"] => Ok(Control::RestartRedis(Data::Empty)),
            ["kill", node] => Ok(Control::KillNode((*node).to_owned())),
            ["term", node] => Ok(Control::TermNode((*node).to_owned())),
            ["restart", node] => Ok(Control::RestartNode((*node).to_owned())),
            ["describe"] => Ok(Control::Describe),
            _ => Err(FleetError::Usage(format!(
                "unknown command {line:?}: kill|term|restart <node>, kill redis, restart redis [--empty], describe"
            ))),
        }
    }
}

/// `KEY=VALUE` as a node setting: `VC_RESUME__WINDOW=3s` as it is, or the
/// dotted path of docs/configuration.md, `resume.window=3s`.
pub fn parse_setting(arg: &str) -> Result<(String, String), FleetError> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| FleetError::Usage(format!("--set {arg:?}: expected KEY=VALUE")))?;
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(FleetError::Usage(format!("--set {arg:?}: bad key")));
    }
    let key = if key.starts_with("VC_") {
        key.to_owned()
    } else {
        format!("VC_{}", key.to_ascii_uppercase().replace('.', "__"))
    };
    Ok((key, value.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation should stop the test with its message"
    )]

    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            Control::parse("kill node-2").unwrap(),
            Control::KillNode("node-2".into())
        );
        assert_eq!(
            Control::parse(" term  a ").unwrap(),
            Control::TermNode("a".into())
        );
        assert_eq!(
            Control::parse("restart b").unwrap(),
            Control::RestartNode("b".into())
        );
        assert_eq!(Control::parse("kill redis").unwrap(), Control::KillRedis);
        assert_eq!(
            Control::parse("restart redis").unwrap(),
            Control::RestartRedis(Data::Kept)
        );
        assert_eq!(
            Control::parse("restart redis --empty").unwrap(),
            Control::RestartRedis(Data::Empty)
        );
        assert_eq!(Control::parse("describe").unwrap(), Control::Describe);
        assert!(Control::parse("").is_err());
        assert!(Control::parse("stop everything now").is_err());
    }

    #[test]
    fn settings_take_either_spelling() {
        assert_eq!(
            parse_setting("VC_RESUME__WINDOW=3s").unwrap(),
            ("VC_RESUME__WINDOW".into(), "3s".into())
        );
        assert_eq!(
            parse_setting("redis.node_ttl=1500ms").unwrap(),
            ("VC_REDIS__NODE_TTL".into(), "1500ms".into())
        );
        assert_eq!(
            parse_setting("ice.stun_urls=stun:a=b").unwrap(),
            ("VC_ICE__STUN_URLS".into(), "stun:a=b".into())
        );
        assert!(parse_setting("novalue").is_err());
        assert!(parse_setting("=x").is_err());
    }
}
