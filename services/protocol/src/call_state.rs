//! A peer's state in the call: what the others show of it (a raised hand, a
//! muted microphone, a camera turned off, a shared screen), kept with its seat.

use serde::{Deserialize, Serialize};

/// A peer's whole state in the call. In `members` (and in a seat's record) each
/// field is written only while it is true, so an absent field is false; in
/// `peer-state` every field is written (see [`every_field`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallState {
    /// The peer's hand is raised.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hand: bool,
    /// The peer's microphone is muted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
    /// The peer's camera is off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub camera_off: bool,
    /// The peer is sharing its screen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sharing: bool,
}

impl CallState {
    /// The wire names of the fields, in declaration order.
    pub const FIELDS: [&'static str; 4] = ["hand", "muted", "cameraOff", "sharing"];

    /// This state with the fields `change` names set to what it says.
    #[must_use]
    pub fn with(self, change: CallStateChange) -> Self {
        CallState {
            hand: change.hand.unwrap_or(self.hand),
            muted: change.muted.unwrap_or(self.muted),
            camera_off: change.camera_off.unwrap_or(self.camera_off),
            sharing: change.sharing.unwrap_or(self.sharing),
        }
    }
}

/// What a `call-state` message asks: each field it carries is set, the others
/// keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallStateChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_off: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<bool>,
}

impl CallStateChange {
    /// True when it names no field: such a `call-state` is `invalid-message`.
    pub fn is_empty(&self) -> bool {
        self.hand.is_none()
            && self.muted.is_none()
            && self.camera_off.is_none()
            && self.sharing.is_none()
    }
}

/// A [`CallState`] with every field written, false ones included, for
/// `#[serde(with = "...")]`: `peer-state` tells the whole state, so that a
/// client never has to know what it had before.
pub mod every_field {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::CallState;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Whole {
        #[serde(default)]
        hand: bool,
        #[serde(default)]
        muted: bool,
        #[serde(default)]
        camera_off: bool,
        #[serde(default)]
        sharing: bool,
    }

    pub fn serialize<S: Serializer>(state: &CallState, serializer: S) -> Result<S::Ok, S::Error> {
        Whole {
            hand: state.hand,
            muted: state.muted,
            camera_off: state.camera_off,
            sharing: state.sharing,
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<CallState, D::Error> {
        let whole = Whole::deserialize(deserializer)?;
        Ok(CallState {
            hand: whole.hand,
            muted: whole.muted,
            camera_off: whole.camera_off,
            sharing: whole.sharing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_true_fields_are_written_and_absent_ones_read_as_false() {
        let state = CallState {
            muted: true,
            camera_off: true,
            ..CallState::default()
        };
        let json = serde_json::to_string(&state).expect("serializes");
        assert_eq!(json, r#"{"muted":true,"cameraOff":true}"#);
        assert_eq!(
            serde_json::from_str::<CallState>(&json).expect("parses"),
            state
        );
        assert_eq!(
            serde_json::to_string(&CallState::default()).expect("serializes"),
            "{}"
        );
    }

    #[test]
    fn a_change_sets_what_it_names_and_keeps_the_rest() {
        let before = CallState {
            hand: true,
            sharing: true,
            ..CallState::default()
        };
        let change: CallStateChange =
            serde_json::from_str(r#"{"muted":true,"sharing":false}"#).expect("parses");
        assert!(!change.is_empty());
        assert_eq!(
            before.with(change),
            CallState {
                hand: true,
                muted: true,
                camera_off: false,
                sharing: false,
            }
        );
        assert!(CallStateChange::default().is_empty());
        assert_eq!(before.with(CallStateChange::default()), before);
    }

    #[test]
    fn fields_are_the_wire_names() {
        let all = CallState {
            hand: true,
            muted: true,
            camera_off: true,
            sharing: true,
        };
        let json = serde_json::to_value(all).expect("serializes");
        let mut names: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        let mut expected = CallState::FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected);
    }
}
