//! The Room aggregate: its state, which command each decision handles, and how events change
//! the state. One file per decision.

mod create;
mod lifecycle;
mod participants;
mod settings;

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::{Presence, RoomCommand, RoomError, RoomEvent, RoomSettings, Status};

/// What a room's decisions need to know of its history. Stored as each room's state row:
/// fields added later take their default when an older row is read.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Room {
    id: Option<String>,
    host_id: String,
    settings: RoomSettings,
    is_locked: bool,
    ended: bool,
    /// Joined and waiting participants, by participant id; those who left or were denied are
    /// gone.
    participants: BTreeMap<String, Presence>,
    /// How many have entered (joined or knocked), ever: "Participant N" for one with no name.
    entries: u64,
    /// Users, and guests' networks (origins), the host blocked: they cannot come back.
    blocked_users: BTreeSet<String>,
    blocked_origins: BTreeSet<String>,
}

impl Aggregate for Room {
    const TYPE: &'static str = "Room";
    type Command = RoomCommand;
    type Event = RoomEvent;
    type Error = RoomError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            RoomCommand::CreateRoom(create) => self.create(create)?.to_vec(),
            RoomCommand::UpdateSettings(update) => self.update_settings(update)?,
            RoomCommand::EndRoom(end) => self.end(end)?,
            RoomCommand::JoinRoom(join) => self.join(join)?,
            RoomCommand::AdmitParticipant(decide) => self.admit(decide)?,
            RoomCommand::DenyParticipant(decide) => self.deny(decide)?,
            RoomCommand::RemoveParticipant(remove) => self.remove(remove)?,
            RoomCommand::DenyWaiting(deny) => self.deny_waiting(deny)?,
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        enum Kind {
            Joined,
            Other,
        }
        let event_kind = match event {
            RoomEvent::ParticipantJoined(_) => Kind::Joined,
            _ => Kind::Other,
        };
        match event {
            RoomEvent::RoomCreated(created) => {
                self.id = Some(created.room_id);
                self.host_id = created.host.id;
                self.is_locked = created.is_locked;
                self.ended = !created.is_active;
            }
            RoomEvent::SettingsConfigured(configured) => self.settings = configured.settings(),
            RoomEvent::SettingsUpdated(updated) => updated.changes.apply_to(&mut self.settings),
            RoomEvent::RoomLocked(_) => self.is_locked = true,
            RoomEvent::RoomUnlocked(_) => self.is_locked = false,
            RoomEvent::RoomEnded(_) => self.ended = true,
            RoomEvent::ParticipantJoined(entered) | RoomEvent::ParticipantWaiting(entered) => {
                let status = if matches!(event_kind, Kind::Joined) {
                    Status::Joined
                } else {
                    Status::Waiting
                };
                self.entries += 1;
                self.participants.insert(
                    entered.participant_id,
                    Presence {
                        user_id: entered.user_id,
                        role: entered.role,
                        status,
                        origin: entered.origin,
                    },
                );
            }
            RoomEvent::ParticipantAdmitted(admitted) => {
                if let Some(presence) = self.participants.get_mut(&admitted.participant_id) {
                    presence.status = Status::Joined;
                }
            }
            RoomEvent::ParticipantDenied(decided) => {
                self.participants.remove(&decided.participant_id);
            }
            RoomEvent::ParticipantLeft(left) => {
                self.participants.remove(&left.participant_id);
            }
            RoomEvent::ParticipantBlocked(blocked) => {
                self.blocked_users.extend(blocked.user_id);
                self.blocked_origins.extend(blocked.origin);
            }
        }
    }
}

impl Room {
    /// How many participants have joined (the waiting room does not count).
    fn joined(&self) -> usize {
        self.participants
            .values()
            .filter(|p| p.status == Status::Joined)
            .count()
    }

    /// The room as its host may change it: it exists, `user` hosts it, and it has not ended.
    /// Ending an ended room is no change, so `end` checks the last rule itself.
    fn hosted_by(&self, user: &str) -> Result<&str, RoomError> {
        let id = self.id.as_deref().ok_or(RoomError::NotFound)?;
        if self.host_id != user {
            return Err(RoomError::NotHost);
        }
        Ok(id)
    }
}
