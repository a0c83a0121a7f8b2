//! The Room aggregate: its state, which command each decision handles, and how events change
//! the state. One file per decision.

mod create;
mod lifecycle;
mod settings;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::{RoomCommand, RoomError, RoomEvent, RoomSettings};

/// What a room's decisions need to know of its history.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    id: Option<String>,
    host_id: String,
    settings: RoomSettings,
    is_locked: bool,
    ended: bool,
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
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
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
        }
    }
}

impl Room {
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
