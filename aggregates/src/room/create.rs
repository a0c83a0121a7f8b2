//! Creating a room: the room and its first settings, in one decision.

use super::Room;
use crate::validation::{DEFAULT_MAX_PARTICIPANTS, DEFAULT_NAME, HOST_NAME};
use crate::{
    text, validate_room_fields, CreateRoom, Host, RoomCreated, RoomError, RoomEvent,
    SettingsConfigured,
};

impl Room {
    pub(super) fn create(&self, command: CreateRoom) -> Result<[RoomEvent; 2], RoomError> {
        if let Some(id) = &self.id {
            return Err(RoomError::AlreadyExists(id.clone()));
        }
        let violations = validate_room_fields(command.name.as_deref(), command.max_participants);
        if !violations.is_empty() {
            return Err(RoomError::Invalid(violations));
        }
        Ok([
            RoomEvent::RoomCreated(RoomCreated {
                room_id: command.room_id.clone(),
                code: command.code,
                name: command
                    .name
                    .map_or_else(|| DEFAULT_NAME.to_owned(), |name| text::normalized(&name)),
                host: Host {
                    // A token with no name to show: the room never shows its `sub` instead.
                    display_name: match command.host.display_name {
                        name if name.is_empty() => HOST_NAME.to_owned(),
                        name => name,
                    },
                    ..command.host
                },
                is_active: true,
                is_locked: false,
                created_at: command.at,
            }),
            RoomEvent::SettingsConfigured(SettingsConfigured {
                settings_id: command.settings_id,
                room_id: command.room_id,
                allow_chat: true,
                allow_screen_share: true,
                allow_guest_access: true,
                waiting_room: command.waiting_room.unwrap_or(false),
                mute_participants_on_join: false,
                max_participants: command.max_participants.unwrap_or(DEFAULT_MAX_PARTICIPANTS),
                configured_at: command.at,
            }),
        ])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Utc;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::{FieldViolation, Host, RoomCode, RoomCommand};

    pub(crate) const AT: chrono::DateTime<Utc> =
        chrono::DateTime::from_timestamp_nanos(1_772_533_800_000_000_000);

    fn command() -> CreateRoom {
        CreateRoom {
            room_id: "room-1".into(),
            settings_id: "settings-1".into(),
            code: RoomCode::parse("abc-def-ghi").unwrap(),
            host: Host {
                id: "user-1".into(),
                display_name: "Ada".into(),
                avatar_url: None,
            },
            at: AT,
            name: None,
            waiting_room: None,
            max_participants: None,
        }
    }

    pub(crate) fn created(name: &str) -> RoomEvent {
        let c = command();
        RoomEvent::RoomCreated(RoomCreated {
            room_id: c.room_id,
            code: c.code,
            name: name.into(),
            host: c.host,
            is_active: true,
            is_locked: false,
            created_at: c.at,
        })
    }

    pub(crate) fn configured(waiting_room: bool, max_participants: i64) -> RoomEvent {
        let c = command();
        RoomEvent::SettingsConfigured(SettingsConfigured {
            settings_id: c.settings_id,
            room_id: c.room_id,
            allow_chat: true,
            allow_screen_share: true,
            allow_guest_access: true,
            waiting_room,
            mute_participants_on_join: false,
            max_participants,
            configured_at: c.at,
        })
    }

    fn create(command: CreateRoom) -> RoomCommand {
        RoomCommand::CreateRoom(command)
    }

    #[tokio::test]
    async fn applies_the_documented_defaults() {
        TestFramework::<Room>::with(())
            .given_no_previous_events()
            .when_async(create(command()))
            .await
            .then_expect_events(vec![created("Meeting Room"), configured(false, 50)]);
    }

    #[tokio::test]
    async fn keeps_what_the_client_sent() {
        let sent = CreateRoom {
            name: Some("Team Standup".into()),
            waiting_room: Some(true),
            max_participants: Some(10),
            ..command()
        };
        TestFramework::<Room>::with(())
            .given_no_previous_events()
            .when_async(create(sent))
            .await
            .then_expect_events(vec![created("Team Standup"), configured(true, 10)]);
    }

    #[tokio::test]
    async fn accepts_the_bounds() {
        for (name, max) in [("x".to_string(), 2), ("é".repeat(100), 100)] {
            let sent = CreateRoom {
                name: Some(name.clone()),
                max_participants: Some(max),
                ..command()
            };
            TestFramework::<Room>::with(())
                .given_no_previous_events()
                .when_async(create(sent))
                .await
                .then_expect_events(vec![created(&name), configured(false, max)]);
        }
    }

    #[tokio::test]
    async fn rejects_an_empty_name() {
        let sent = CreateRoom {
            name: Some(String::new()),
            ..command()
        };
        TestFramework::<Room>::with(())
            .given_no_previous_events()
            .when_async(create(sent))
            .await
            .then_expect_error(RoomError::Invalid(vec![FieldViolation::new(
                "name",
                "must not be blank",
            )]));
    }

    #[tokio::test]
    async fn rejects_a_name_over_100_characters() {
        let sent = CreateRoom {
            name: Some("a".repeat(101)),
            ..command()
        };
        let result = TestFramework::<Room>::with(())
            .given_no_previous_events()
            .when_async(create(sent))
            .await
            .inspect_result();
        assert!(
            matches!(result, Err(RoomError::Invalid(v)) if v.len() == 1 && v[0].field == "name")
        );
    }

    #[tokio::test]
    async fn rejects_max_participants_out_of_range() {
        for max in [1, 101, -5] {
            let sent = CreateRoom {
                max_participants: Some(max),
                ..command()
            };
            let result = TestFramework::<Room>::with(())
                .given_no_previous_events()
                .when_async(create(sent))
                .await
                .inspect_result();
            assert!(
                matches!(&result, Err(RoomError::Invalid(v)) if v.len() == 1 && v[0].field == "maxParticipants"),
                "{max}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn names_every_failing_field_at_once() {
        let sent = CreateRoom {
            name: Some(String::new()),
            max_participants: Some(0),
            ..command()
        };
        let result = TestFramework::<Room>::with(())
            .given_no_previous_events()
            .when_async(create(sent))
            .await
            .inspect_result();
        let Err(RoomError::Invalid(violations)) = result else {
            panic!("expected a validation error, got {result:?}");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["name", "maxParticipants"]);
    }

    #[tokio::test]
    async fn refuses_to_create_a_room_twice() {
        TestFramework::<Room>::with(())
            .given(vec![created("Meeting Room"), configured(false, 50)])
            .when_async(create(command()))
            .await
            .then_expect_error(RoomError::AlreadyExists("room-1".into()));
    }

    #[test]
    fn stores_payloads_with_camel_case_fields_and_type_tags() {
        let json = serde_json::to_value(configured(true, 10)).unwrap();
        assert_eq!(json["SettingsConfigured"]["maxParticipants"], 10);
        assert_eq!(json["SettingsConfigured"]["waitingRoom"], true);
        let json = serde_json::to_value(created("Standup")).unwrap();
        assert_eq!(json["RoomCreated"]["host"]["displayName"], "Ada");
        assert_eq!(json["RoomCreated"]["code"], "abc-def-ghi");
    }
}
