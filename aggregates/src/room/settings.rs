//! Changing a room's settings, and locking or unlocking it.

use super::Room;
use crate::{
    validate_room_fields, RoomError, RoomEvent, RoomLocked, RoomUnlocked, SettingsUpdated,
    UpdateSettings,
};

impl Room {
    /// Only what differs from the current values becomes an event; nothing that differs, no
    /// event. Lock changes are events of their own.
    pub(super) fn update_settings(
        &self,
        command: UpdateSettings,
    ) -> Result<Vec<RoomEvent>, RoomError> {
        let room_id = self.hosted_by(&command.by)?.to_owned();
        if self.ended {
            return Err(RoomError::Ended);
        }
        let violations = validate_room_fields(None, command.changes.max_participants);
        if !violations.is_empty() {
            return Err(RoomError::Invalid(violations));
        }
        let joined = self.joined();
        if command
            .changes
            .max_participants
            .is_some_and(|max| (max as usize) < joined)
        {
            return Err(RoomError::MoreJoinedThan(joined));
        }
        let mut events = Vec::new();
        let changes = command.changes.differences_from(&self.settings);
        if !changes.is_empty() {
            events.push(RoomEvent::SettingsUpdated(SettingsUpdated {
                room_id: room_id.clone(),
                changes,
                updated_at: command.at,
            }));
        }
        match command.is_locked {
            Some(true) if !self.is_locked => {
                events.push(RoomEvent::RoomLocked(RoomLocked {
                    room_id,
                    at: command.at,
                }));
            }
            Some(false) if self.is_locked => {
                events.push(RoomEvent::RoomUnlocked(RoomUnlocked {
                    room_id,
                    at: command.at,
                }));
            }
            _ => {}
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::room::create::tests::{configured, created, AT};
    use crate::{RoomCommand, SettingsChanges};

    fn update(changes: SettingsChanges, is_locked: Option<bool>) -> RoomCommand {
        RoomCommand::UpdateSettings(UpdateSettings {
            by: "user-1".into(),
            at: AT,
            changes,
            is_locked,
        })
    }

    fn history() -> Vec<RoomEvent> {
        vec![created("Meeting Room"), configured(false, 50)]
    }

    #[tokio::test]
    async fn records_only_the_fields_that_change() {
        let changes = SettingsChanges {
            allow_chat: Some(false),
            waiting_room: Some(false), // already false
            max_participants: Some(10),
            ..Default::default()
        };
        TestFramework::<Room>::with(())
            .given(history())
            .when_async(update(changes, Some(true)))
            .await
            .then_expect_events(vec![
                RoomEvent::SettingsUpdated(SettingsUpdated {
                    room_id: "room-1".into(),
                    changes: SettingsChanges {
                        allow_chat: Some(false),
                        max_participants: Some(10),
                        ..Default::default()
                    },
                    updated_at: AT,
                }),
                RoomEvent::RoomLocked(RoomLocked {
                    room_id: "room-1".into(),
                    at: AT,
                }),
            ]);
    }

    #[tokio::test]
    async fn no_change_is_no_event() {
        let same = SettingsChanges {
            allow_chat: Some(true),
            max_participants: Some(50),
            ..Default::default()
        };
        TestFramework::<Room>::with(())
            .given(history())
            .when_async(update(same, Some(false)))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn unlocks_a_locked_room() {
        let mut given = history();
        given.push(RoomEvent::RoomLocked(RoomLocked {
            room_id: "room-1".into(),
            at: AT,
        }));
        TestFramework::<Room>::with(())
            .given(given)
            .when_async(update(SettingsChanges::default(), Some(false)))
            .await
            .then_expect_events(vec![RoomEvent::RoomUnlocked(RoomUnlocked {
                room_id: "room-1".into(),
                at: AT,
            })]);
    }

    #[tokio::test]
    async fn only_the_host_changes_settings() {
        let command = RoomCommand::UpdateSettings(UpdateSettings {
            by: "someone-else".into(),
            at: AT,
            changes: SettingsChanges::default(),
            is_locked: None,
        });
        TestFramework::<Room>::with(())
            .given(history())
            .when_async(command)
            .await
            .then_expect_error(RoomError::NotHost);
    }

    #[tokio::test]
    async fn an_unknown_room_is_not_found() {
        TestFramework::<Room>::with(())
            .given_no_previous_events()
            .when_async(update(SettingsChanges::default(), None))
            .await
            .then_expect_error(RoomError::NotFound);
    }

    #[tokio::test]
    async fn an_ended_room_keeps_its_settings() {
        let mut given = history();
        given.push(crate::room::lifecycle::tests::ended());
        TestFramework::<Room>::with(())
            .given(given)
            .when_async(update(SettingsChanges::default(), Some(true)))
            .await
            .then_expect_error(RoomError::Ended);
    }

    #[tokio::test]
    async fn max_participants_stays_in_range() {
        let changes = SettingsChanges {
            max_participants: Some(101),
            ..Default::default()
        };
        let result = TestFramework::<Room>::with(())
            .given(history())
            .when_async(update(changes, None))
            .await
            .inspect_result();
        assert!(
            matches!(&result, Err(RoomError::Invalid(v)) if v[0].field == "maxParticipants"),
            "{result:?}"
        );
    }
}
