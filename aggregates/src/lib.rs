//! The Room aggregate of NeuronMeet: its commands, events and domain errors.
//!
//! Pure domain code: no IO, no SQL, no HTTP. Everything the aggregate needs from the outside
//! world (ids, the room code, the clock, the acting user) arrives inside the command, so the
//! same command always yields the same events.

mod code;
mod command;
mod error;
mod event;
mod participant;
mod room;
mod settings;
pub mod text;
mod timestamp;
mod validation;

pub use code::{RoomCode, RoomCodeError};
pub use command::{
    CreateRoom, Decide, DenyWaiting, EndRoom, Host, JoinRoom, RemoveParticipant, RoomCommand,
    UpdateSettings,
};
pub use error::{FieldViolation, RoomError};
pub use event::{
    ParticipantBlocked, ParticipantDecided, ParticipantEntered, ParticipantLeft, RoomCreated,
    RoomEnded, RoomEvent, RoomLocked, RoomUnlocked, SettingsConfigured, SettingsUpdated,
    EVENT_VERSION,
};
pub use participant::{Actor, Joiner, LeaveReason, Presence, Role, Status};
pub use room::Room;
pub use settings::{RoomSettings, SettingsChanges};
pub use validation::{
    validate_room_fields, DEFAULT_MAX_PARTICIPANTS, DEFAULT_NAME, HOST_NAME,
    MAX_DISPLAY_NAME_CHARS, MAX_NAME_CHARS, MAX_PARTICIPANTS_RANGE,
};
