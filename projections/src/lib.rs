//! Read models of rooms and how events change them. Pure: the service's store adapter writes
//! these rows inside the command's transaction, and replay rebuilds them from the log.

mod participant_view;
mod room_view;

pub use participant_view::ParticipantView;
pub use room_view::{OutOfOrder, RoomSettingsView, RoomView};
