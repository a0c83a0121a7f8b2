//! Joining a room, the waiting room (admit, deny), and leaving. The room decides every join, so
//! its limits hold however many instances serve it.

use super::Room;
use crate::{
    text, Actor, Decide, DenyWaiting, FieldViolation, JoinRoom, Joiner, LeaveReason,
    ParticipantBlocked, ParticipantDecided, ParticipantEntered, ParticipantLeft, RemoveParticipant,
    Role, RoomError, RoomEvent, Status, HOST_NAME, MAX_DISPLAY_NAME_CHARS,
};

/// Most participants a waiting room holds: anyone may knock (guests need no account), and
/// each waiting participant is part of the room's state.
pub const MAX_WAITING: usize = 500;
/// Most guests among them: anonymous knocks cannot crowd members out of the waiting room.
pub const MAX_WAITING_GUESTS: usize = MAX_WAITING / 2;

impl Room {
    /// The host joins at once, whatever the room's rules. Anyone else: not when the room is
    /// locked, guests not when it admits none; into the waiting room when it has one; else in,
    /// while fewer than `maxParticipants` have joined. A user already in (joined or waiting)
    /// changes nothing.
    /// The name the room shows for one entering as `role` (crate::text): a user with no name
    /// to show is "Host", or "Participant N" (never their id); only the host may end their name
    /// with a host marker.
    fn shown_name(&self, name: &str, role: Role) -> Result<String, RoomError> {
        let name = text::normalized(name);
        if name.is_empty() && role != Role::Guest {
            return Ok(match role {
                Role::Host => HOST_NAME.to_owned(),
                _ => format!("Participant {}", self.entries + 1),
            });
        }
        let refused =
            |message: &str| RoomError::Invalid(vec![FieldViolation::new("displayName", message)]);
        if let Some(violation) = text::violation("displayName", &name, MAX_DISPLAY_NAME_CHARS) {
            return Err(RoomError::Invalid(vec![violation]));
        }
        if role != Role::Host && text::claims_to_host(&name) {
            return Err(refused(
                "must not end with a host marker such as \"(Host)\": only the host's may (the API marks the host with role)",
            ));
        }
        Ok(name)
    }

    pub(super) fn join(&self, command: JoinRoom) -> Result<Vec<RoomEvent>, RoomError> {
        let room_id = self.id.clone().ok_or(RoomError::NotFound)?;
        if self.ended {
            return Err(RoomError::Ended);
        }
        let (user_id, display_name, avatar_url, origin) = match command.joiner {
            Joiner::User(user) => (Some(user.id), user.display_name, user.avatar_url, None),
            Joiner::Guest {
                display_name,
                origin,
            } => (None, display_name, None, origin),
        };
        if user_id.is_some() && self.participants.values().any(|p| p.user_id == user_id) {
            return Ok(Vec::new());
        }
        let is_host = user_id.as_deref() == Some(self.host_id.as_str());
        let role = match (&user_id, is_host) {
            (_, true) => Role::Host,
            (Some(_), false) => Role::Member,
            (None, _) => Role::Guest,
        };
        let blocked = match &user_id {
            Some(user) => self.blocked_users.contains(user),
            None => origin
                .as_ref()
                .is_some_and(|o| self.blocked_origins.contains(o)),
        };
        if blocked && !is_host {
            return Err(RoomError::Blocked);
        }
        let display_name = self.shown_name(&display_name, role)?;
        let entered = ParticipantEntered {
            room_id,
            participant_id: command.participant_id,
            user_id,
            display_name,
            avatar_url,
            role,
            muted: !is_host && self.settings.mute_participants_on_join,
            at: command.at,
            origin,
        };
        if is_host {
            return Ok(vec![RoomEvent::ParticipantJoined(entered)]);
        }
        if self.is_locked {
            return Err(RoomError::Locked);
        }
        if role == Role::Guest && !self.settings.allow_guest_access {
            return Err(RoomError::GuestsNotAllowed);
        }
        if self.settings.waiting_room {
            let waiting = self.participants.len() - self.joined();
            let waiting_guests = || {
                self.participants
                    .values()
                    .filter(|p| p.status == Status::Waiting && p.role == Role::Guest)
                    .count()
            };
            if waiting >= MAX_WAITING
                || (role == Role::Guest && waiting_guests() >= MAX_WAITING_GUESTS)
            {
                return Err(RoomError::WaitingRoomFull);
            }
            return Ok(vec![RoomEvent::ParticipantWaiting(entered)]);
        }
        if self.joined() >= self.settings.max_participants as usize {
            return Err(RoomError::Full);
        }
        Ok(vec![RoomEvent::ParticipantJoined(entered)])
    }

    /// Admitting a participant who has joined already changes nothing.
    pub(super) fn admit(&self, command: Decide) -> Result<Vec<RoomEvent>, RoomError> {
        let room_id = self.hosted_by(&command.by)?.to_owned();
        let presence = self
            .participants
            .get(&command.participant_id)
            .ok_or(RoomError::NoSuchParticipant)?;
        if presence.status == Status::Joined {
            return Ok(Vec::new());
        }
        if self.joined() >= self.settings.max_participants as usize {
            return Err(RoomError::Full);
        }
        Ok(vec![RoomEvent::ParticipantAdmitted(ParticipantDecided {
            room_id,
            participant_id: command.participant_id,
            by: command.by,
            at: command.at,
        })])
    }

    pub(super) fn deny(&self, command: Decide) -> Result<Vec<RoomEvent>, RoomError> {
        let room_id = self.hosted_by(&command.by)?.to_owned();
        let presence = self
            .participants
            .get(&command.participant_id)
            .ok_or(RoomError::NoSuchParticipant)?;
        if presence.status != Status::Waiting {
            return Err(RoomError::NotWaiting);
        }
        Ok(vec![RoomEvent::ParticipantDenied(ParticipantDecided {
            room_id,
            participant_id: command.participant_id,
            by: command.by,
            at: command.at,
        })])
    }

    /// A participant leaves (by their user or join token), or the host removes them.
    pub(super) fn remove(&self, command: RemoveParticipant) -> Result<Vec<RoomEvent>, RoomError> {
        let room_id = self.id.clone().ok_or(RoomError::NotFound)?;
        let presence = self
            .participants
            .get(&command.participant_id)
            .ok_or(RoomError::NoSuchParticipant)?;
        let themself = match &command.by {
            Actor::User(user) => presence.user_id.as_ref() == Some(user),
            Actor::Participant(id) => *id == command.participant_id,
        };
        let host = matches!(&command.by, Actor::User(user) if *user == self.host_id);
        let reason = match (themself, host) {
            (true, _) => LeaveReason::Left,
            (false, true) => LeaveReason::Removed,
            (false, false) => return Err(RoomError::NotSelfOrHost),
        };
        if command.block && (reason != LeaveReason::Removed || presence.role == Role::Host) {
            return Err(RoomError::CannotBlock);
        }
        let mut events = vec![RoomEvent::ParticipantLeft(ParticipantLeft {
            room_id: room_id.clone(),
            participant_id: command.participant_id.clone(),
            reason,
            at: command.at,
        })];
        if command.block {
            events.push(RoomEvent::ParticipantBlocked(ParticipantBlocked {
                room_id,
                participant_id: command.participant_id,
                user_id: presence.user_id.clone(),
                origin: presence.origin.clone(),
                by: self.host_id.clone(),
                at: command.at,
            }));
        }
        Ok(events)
    }

    /// Everyone in the waiting room denied, in one decision (one event each, in the order they
    /// knocked); an empty waiting room changes nothing.
    pub(super) fn deny_waiting(&self, command: DenyWaiting) -> Result<Vec<RoomEvent>, RoomError> {
        let room_id = self.hosted_by(&command.by)?.to_owned();
        if self.ended {
            return Err(RoomError::Ended);
        }
        Ok(self
            .participants
            .iter()
            .filter(|(_, presence)| presence.status == Status::Waiting)
            .map(|(id, _)| {
                RoomEvent::ParticipantDenied(ParticipantDecided {
                    room_id: room_id.clone(),
                    participant_id: id.clone(),
                    by: command.by.clone(),
                    at: command.at,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::room::create::tests::{configured, created, AT};
    use crate::{Host, RoomCommand, RoomLocked, SettingsChanges, SettingsUpdated};

    fn user(id: &str) -> Joiner {
        Joiner::User(Host {
            id: id.into(),
            display_name: id.to_uppercase(),
            avatar_url: None,
        })
    }

    fn join(pid: &str, joiner: Joiner) -> RoomCommand {
        RoomCommand::JoinRoom(JoinRoom {
            participant_id: pid.into(),
            joiner,
            at: AT,
        })
    }

    fn entered(pid: &str, user_id: Option<&str>, role: Role, muted: bool) -> ParticipantEntered {
        ParticipantEntered {
            room_id: "room-1".into(),
            participant_id: pid.into(),
            user_id: user_id.map(Into::into),
            display_name: user_id.map_or("Guest".into(), str::to_uppercase),
            avatar_url: None,
            role,
            muted,
            at: AT,
            origin: None,
        }
    }

    fn room(waiting_room: bool, max: i64) -> Vec<RoomEvent> {
        vec![created("Meeting Room"), configured(waiting_room, max)]
    }

    fn with(
        mut events: Vec<RoomEvent>,
        more: impl IntoIterator<Item = RoomEvent>,
    ) -> Vec<RoomEvent> {
        events.extend(more);
        events
    }

    fn joined(pid: &str, user_id: &str) -> RoomEvent {
        RoomEvent::ParticipantJoined(entered(pid, Some(user_id), Role::Member, false))
    }

    #[tokio::test]
    async fn a_member_joins_an_open_room() {
        TestFramework::<Room>::with(())
            .given(room(false, 50))
            .when_async(join("p1", user("ada")))
            .await
            .then_expect_events(vec![joined("p1", "ada")]);
    }

    #[tokio::test]
    async fn joining_again_changes_nothing() {
        TestFramework::<Room>::with(())
            .given(with(room(false, 50), [joined("p1", "ada")]))
            .when_async(join("p2", user("ada")))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn the_host_joins_a_locked_room_with_a_waiting_room() {
        let locked = RoomEvent::RoomLocked(RoomLocked {
            room_id: "room-1".into(),
            at: AT,
        });
        TestFramework::<Room>::with(())
            .given(with(room(true, 2), [locked]))
            .when_async(join("p1", user("user-1")))
            .await
            .then_expect_events(vec![RoomEvent::ParticipantJoined(entered(
                "p1",
                Some("user-1"),
                Role::Host,
                false,
            ))]);
    }

    #[tokio::test]
    async fn a_full_room_refuses_and_waiting_does_not_count() {
        let waiting = RoomEvent::ParticipantWaiting(entered("w", Some("wes"), Role::Member, false));
        TestFramework::<Room>::with(())
            .given(with(
                room(false, 2),
                [joined("p1", "ada"), joined("p2", "bob"), waiting],
            ))
            .when_async(join("p3", user("cy")))
            .await
            .then_expect_error(RoomError::Full);
    }

    #[tokio::test]
    async fn the_waiting_room_takes_members_and_admits_up_to_the_limit() {
        let waiting = |pid: &str, who: &str| {
            RoomEvent::ParticipantWaiting(entered(pid, Some(who), Role::Member, false))
        };
        TestFramework::<Room>::with(())
            .given(room(true, 2))
            .when_async(join("p1", user("ada")))
            .await
            .then_expect_events(vec![waiting("p1", "ada")]);
        let admit = |pid: &str| {
            RoomCommand::AdmitParticipant(Decide {
                by: "user-1".into(),
                participant_id: pid.into(),
                at: AT,
            })
        };
        TestFramework::<Room>::with(())
            .given(with(room(true, 2), [waiting("p1", "ada")]))
            .when_async(admit("p1"))
            .await
            .then_expect_events(vec![RoomEvent::ParticipantAdmitted(ParticipantDecided {
                room_id: "room-1".into(),
                participant_id: "p1".into(),
                by: "user-1".into(),
                at: AT,
            })]);
        TestFramework::<Room>::with(())
            .given(with(
                room(true, 2),
                [joined("a", "ann"), joined("b", "ben"), waiting("p1", "ada")],
            ))
            .when_async(admit("p1"))
            .await
            .then_expect_error(RoomError::Full);
    }

    #[tokio::test]
    async fn guests_are_refused_when_the_room_admits_none() {
        let no_guests = RoomEvent::SettingsUpdated(SettingsUpdated {
            room_id: "room-1".into(),
            changes: SettingsChanges {
                allow_guest_access: Some(false),
                ..Default::default()
            },
            updated_at: AT,
        });
        TestFramework::<Room>::with(())
            .given(with(room(false, 50), [no_guests]))
            .when_async(join(
                "g",
                Joiner::Guest {
                    display_name: "Guest".into(),
                    origin: None,
                },
            ))
            .await
            .then_expect_error(RoomError::GuestsNotAllowed);
    }

    #[tokio::test]
    async fn only_the_participant_or_the_host_removes_them() {
        let remove = |by: Actor| {
            RoomCommand::RemoveParticipant(RemoveParticipant {
                by,
                participant_id: "p1".into(),
                block: false,
                at: AT,
            })
        };
        let left = |reason| {
            RoomEvent::ParticipantLeft(ParticipantLeft {
                room_id: "room-1".into(),
                participant_id: "p1".into(),
                reason,
                at: AT,
            })
        };
        let given = || with(room(false, 50), [joined("p1", "ada")]);
        TestFramework::<Room>::with(())
            .given(given())
            .when_async(remove(Actor::User("ada".into())))
            .await
            .then_expect_events(vec![left(LeaveReason::Left)]);
        TestFramework::<Room>::with(())
            .given(given())
            .when_async(remove(Actor::Participant("p1".into())))
            .await
            .then_expect_events(vec![left(LeaveReason::Left)]);
        TestFramework::<Room>::with(())
            .given(given())
            .when_async(remove(Actor::User("user-1".into())))
            .await
            .then_expect_events(vec![left(LeaveReason::Removed)]);
        TestFramework::<Room>::with(())
            .given(given())
            .when_async(remove(Actor::User("bob".into())))
            .await
            .then_expect_error(RoomError::NotSelfOrHost);
    }

    #[tokio::test]
    async fn ending_the_room_empties_it() {
        let waiting = RoomEvent::ParticipantWaiting(entered("w", Some("wes"), Role::Member, false));
        let events = TestFramework::<Room>::with(())
            .given(with(room(false, 50), [joined("p1", "ada"), waiting]))
            .when_async(RoomCommand::EndRoom(crate::EndRoom {
                by: "user-1".into(),
                at: AT,
            }))
            .await
            .inspect_result()
            .unwrap();
        let names: Vec<&str> = events.iter().map(RoomEvent::name).collect();
        assert_eq!(names, ["ParticipantLeft", "ParticipantDenied", "RoomEnded"]);
    }

    fn guest(pid: &str, origin: &str) -> (RoomCommand, RoomEvent) {
        let joiner = Joiner::Guest {
            display_name: "Guest".into(),
            origin: Some(origin.into()),
        };
        let entered = ParticipantEntered {
            origin: Some(origin.into()),
            ..entered(pid, None, Role::Guest, false)
        };
        (join(pid, joiner), RoomEvent::ParticipantJoined(entered))
    }

    fn block(pid: &str, by: &str) -> RoomCommand {
        RoomCommand::RemoveParticipant(RemoveParticipant {
            by: Actor::User(by.into()),
            participant_id: pid.into(),
            block: true,
            at: AT,
        })
    }

    #[tokio::test]
    async fn a_blocked_user_and_a_blocked_guests_network_cannot_come_back() {
        let (_, guest_joined) = guest("g1", "net-a");
        let given = with(room(false, 50), [joined("p1", "ada"), guest_joined]);
        let mut events = TestFramework::<Room>::with(())
            .given(given.clone())
            .when_async(block("p1", "user-1"))
            .await
            .inspect_result()
            .unwrap();
        assert!(matches!(
            &events[..],
            [RoomEvent::ParticipantLeft(ParticipantLeft { reason: LeaveReason::Removed, .. }),
             RoomEvent::ParticipantBlocked(ParticipantBlocked { user_id: Some(user), origin: None, .. })]
            if user == "ada"
        ));
        events.extend(
            TestFramework::<Room>::with(())
                .given(with(given.clone(), events.clone()))
                .when_async(block("g1", "user-1"))
                .await
                .inspect_result()
                .unwrap(),
        );
        let after = with(given, events);
        TestFramework::<Room>::with(())
            .given(after.clone())
            .when_async(join("p2", user("ada")))
            .await
            .then_expect_error(RoomError::Blocked);
        TestFramework::<Room>::with(())
            .given(after.clone())
            .when_async(guest("g2", "net-a").0)
            .await
            .then_expect_error(RoomError::Blocked);
        // Another network, another user: welcome.
        TestFramework::<Room>::with(())
            .given(after.clone())
            .when_async(guest("g3", "net-b").0)
            .await
            .then_expect_events(vec![guest("g3", "net-b").1]);
        TestFramework::<Room>::with(())
            .given(after)
            .when_async(join("p4", user("bob")))
            .await
            .then_expect_events(vec![joined("p4", "bob")]);
    }

    #[tokio::test]
    async fn only_the_host_blocks_and_never_themself() {
        let given = with(
            room(false, 50),
            [joined("p1", "ada"), joined("h", "user-1")],
        );
        TestFramework::<Room>::with(())
            .given(given.clone())
            .when_async(block("p1", "ada"))
            .await
            .then_expect_error(RoomError::CannotBlock);
        TestFramework::<Room>::with(())
            .given(given.clone())
            .when_async(block("h", "user-1"))
            .await
            .then_expect_error(RoomError::CannotBlock);
        TestFramework::<Room>::with(())
            .given(given)
            .when_async(block("p1", "bob"))
            .await
            .then_expect_error(RoomError::NotSelfOrHost);
    }

    #[tokio::test]
    async fn deny_all_denies_every_knock_in_one_decision() {
        let knocks: Vec<RoomEvent> = (0..3)
            .map(|i| {
                let who = format!("w{i}");
                RoomEvent::ParticipantWaiting(entered(&who, Some(&who), Role::Member, false))
            })
            .collect();
        let given = with(with(room(true, 50), [joined("p1", "ada")]), knocks);
        let deny_all = |by: &str| {
            RoomCommand::DenyWaiting(DenyWaiting {
                by: by.into(),
                at: AT,
            })
        };
        let denied: Vec<RoomEvent> = (0..3)
            .map(|i| {
                RoomEvent::ParticipantDenied(ParticipantDecided {
                    room_id: "room-1".into(),
                    participant_id: format!("w{i}"),
                    by: "user-1".into(),
                    at: AT,
                })
            })
            .collect();
        TestFramework::<Room>::with(())
            .given(given.clone())
            .when_async(deny_all("user-1"))
            .await
            .then_expect_events(denied.clone());
        TestFramework::<Room>::with(())
            .given(with(given.clone(), denied))
            .when_async(deny_all("user-1"))
            .await
            .then_expect_events(vec![]);
        TestFramework::<Room>::with(())
            .given(given)
            .when_async(deny_all("ada"))
            .await
            .then_expect_error(RoomError::NotHost);
    }

    #[tokio::test]
    async fn guests_take_at_most_half_of_the_waiting_room() {
        let knocks: Vec<RoomEvent> = (0..MAX_WAITING_GUESTS)
            .map(|i| {
                RoomEvent::ParticipantWaiting(entered(&format!("g{i}"), None, Role::Guest, false))
            })
            .collect();
        let given = with(room(true, 50), knocks);
        TestFramework::<Room>::with(())
            .given(given.clone())
            .when_async(guest("one-more", "net-z").0)
            .await
            .then_expect_error(RoomError::WaitingRoomFull);
        TestFramework::<Room>::with(())
            .given(given)
            .when_async(join("m", user("mia")))
            .await
            .then_expect_events(vec![RoomEvent::ParticipantWaiting(entered(
                "m",
                Some("mia"),
                Role::Member,
                false,
            ))]);
    }
}
