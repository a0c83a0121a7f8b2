//! A room's settings, and changes to them.

use serde::{Deserialize, Serialize};

/// The settings a room has now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSettings {
    pub allow_chat: bool,
    pub allow_screen_share: bool,
    pub allow_guest_access: bool,
    pub waiting_room: bool,
    pub mute_participants_on_join: bool,
    pub max_participants: i64,
}

/// Settings to change: `None` leaves a setting as it is. In a `SettingsUpdated` event only the
/// settings that changed are present.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_chat: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_screen_share: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_guest_access: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_participants_on_join: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<i64>,
}

impl SettingsChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Only the changes that differ from `current`.
    pub fn differences_from(&self, current: &RoomSettings) -> Self {
        fn differs<T: PartialEq + Copy>(new: Option<T>, old: T) -> Option<T> {
            new.filter(|new| *new != old)
        }
        Self {
            allow_chat: differs(self.allow_chat, current.allow_chat),
            allow_screen_share: differs(self.allow_screen_share, current.allow_screen_share),
            allow_guest_access: differs(self.allow_guest_access, current.allow_guest_access),
            waiting_room: differs(self.waiting_room, current.waiting_room),
            mute_participants_on_join: differs(
                self.mute_participants_on_join,
                current.mute_participants_on_join,
            ),
            max_participants: differs(self.max_participants, current.max_participants),
        }
    }

    pub fn apply_to(&self, settings: &mut RoomSettings) {
        fn set<T: Copy>(target: &mut T, change: Option<T>) {
            if let Some(value) = change {
                *target = value;
            }
        }
        set(&mut settings.allow_chat, self.allow_chat);
        set(&mut settings.allow_screen_share, self.allow_screen_share);
        set(&mut settings.allow_guest_access, self.allow_guest_access);
        set(&mut settings.waiting_room, self.waiting_room);
        set(
            &mut settings.mute_participants_on_join,
            self.mute_participants_on_join,
        );
        set(&mut settings.max_participants, self.max_participants);
    }
}
