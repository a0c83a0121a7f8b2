use aggregates::{RoomCode, RoomEvent, RoomSettings};
use chrono::{DateTime, Utc};

/// One row of the `rooms` read model: everything GET /rooms/{id} shows, flat, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    pub id: String,
    pub code: RoomCode,
    pub name: String,
    pub host_id: String,
    pub host_display_name: String,
    pub host_avatar_url: Option<String>,
    pub is_active: bool,
    pub is_locked: bool,
    pub started_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub settings: Option<RoomSettingsView>,
    /// Sequence of the last event applied: the row's version.
    pub version: i64,
}

/// A room's settings, as the view stores them: their id, and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSettingsView {
    pub id: String,
    pub values: RoomSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {sequence} ({event}) cannot apply to {state}")]
pub struct OutOfOrder {
    pub sequence: i64,
    pub event: &'static str,
    pub state: &'static str,
}

impl RoomView {
    /// Applies the event with this aggregate sequence to the view (`None`: the room has none
    /// yet) and returns the new view. Events must arrive in sequence order.
    pub fn apply(view: Option<Self>, sequence: i64, event: &RoomEvent) -> Result<Self, OutOfOrder> {
        let out_of_order = |state| OutOfOrder {
            sequence,
            event: event.name(),
            state,
        };
        match (view, event) {
            (None, RoomEvent::RoomCreated(created)) => Ok(Self {
                id: created.room_id.clone(),
                code: created.code.clone(),
                name: created.name.clone(),
                host_id: created.host.id.clone(),
                host_display_name: created.host.display_name.clone(),
                host_avatar_url: created.host.avatar_url.clone(),
                is_active: created.is_active,
                is_locked: created.is_locked,
                started_at: created.created_at,
                created_at: created.created_at,
                updated_at: created.created_at,
                ended_at: None,
                settings: None,
                version: sequence,
            }),
            (Some(_), RoomEvent::RoomCreated(_)) => Err(out_of_order("an existing room")),
            (None, _) => Err(out_of_order("a room that does not exist")),
            (Some(mut view), RoomEvent::SettingsConfigured(s)) => {
                view.settings = Some(RoomSettingsView {
                    id: s.settings_id.clone(),
                    values: s.settings(),
                });
                view.updated_at = view.updated_at.max(s.configured_at);
                view.version = sequence;
                Ok(view)
            }
            (Some(mut view), RoomEvent::SettingsUpdated(updated)) => {
                let settings = view
                    .settings
                    .as_mut()
                    .ok_or_else(|| out_of_order("a room without settings"))?;
                updated.changes.apply_to(&mut settings.values);
                Ok(view.changed(sequence, updated.updated_at))
            }
            (Some(mut view), RoomEvent::RoomLocked(locked)) => {
                view.is_locked = true;
                Ok(view.changed(sequence, locked.at))
            }
            (Some(mut view), RoomEvent::RoomUnlocked(unlocked)) => {
                view.is_locked = false;
                Ok(view.changed(sequence, unlocked.at))
            }
            (Some(mut view), RoomEvent::RoomEnded(ended)) => {
                view.is_active = false;
                view.ended_at = Some(ended.ended_at);
                Ok(view.changed(sequence, ended.ended_at))
            }
            // Not the room view's concern (see `concerns`): the view stays as it is.
            (
                Some(view),
                RoomEvent::ParticipantJoined(_)
                | RoomEvent::ParticipantWaiting(_)
                | RoomEvent::ParticipantAdmitted(_)
                | RoomEvent::ParticipantDenied(_)
                | RoomEvent::ParticipantLeft(_)
                | RoomEvent::ParticipantBlocked(_),
            ) => Ok(view),
        }
    }

    /// Whether the event changes the room view: who is in the room does not (the participants
    /// projection keeps that).
    pub fn concerns(event: &RoomEvent) -> bool {
        !matches!(
            event,
            RoomEvent::ParticipantJoined(_)
                | RoomEvent::ParticipantWaiting(_)
                | RoomEvent::ParticipantAdmitted(_)
                | RoomEvent::ParticipantDenied(_)
                | RoomEvent::ParticipantLeft(_)
                | RoomEvent::ParticipantBlocked(_)
        )
    }

    fn changed(mut self, sequence: i64, at: DateTime<Utc>) -> Self {
        self.updated_at = self.updated_at.max(at);
        self.version = sequence;
        self
    }

    /// The view a room's whole history computes, in one fold (tests compare stored views
    /// with it).
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = (i64, &'a RoomEvent)>,
    ) -> Result<Option<Self>, OutOfOrder> {
        events
            .into_iter()
            .try_fold(None, |view, (sequence, event)| {
                Self::apply(view, sequence, event).map(Some)
            })
    }
}
