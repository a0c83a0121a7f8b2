//! Read models of rooms and how events change them. Pure: the service's store adapter writes
//! these rows inside the command's transaction, and replay rebuilds them from the log.

mod room_view;

pub use room_view::{OutOfOrder, RoomSettingsView, RoomView};
