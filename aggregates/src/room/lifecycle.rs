//! Ending a room.

use super::Room;
use crate::{
    EndRoom, LeaveReason, ParticipantDecided, ParticipantLeft, RoomEnded, RoomError, RoomEvent,
    Status,
};

impl Room {
    /// Everyone joined leaves and everyone waiting is denied, then the room ends: the last
    /// event of its history. Ending an ended room changes nothing: no event, no error.
    pub(super) fn end(&self, command: EndRoom) -> Result<Vec<RoomEvent>, RoomError> {
        let room_id = self.hosted_by(&command.by)?.to_owned();
        if self.ended {
            return Ok(Vec::new());
        }
        let mut events: Vec<RoomEvent> = self
            .participants
            .iter()
            .map(|(id, presence)| match presence.status {
                Status::Joined => RoomEvent::ParticipantLeft(ParticipantLeft {
                    room_id: room_id.clone(),
                    participant_id: id.clone(),
                    reason: LeaveReason::RoomEnded,
                    at: command.at,
                }),
                Status::Waiting => RoomEvent::ParticipantDenied(ParticipantDecided {
                    room_id: room_id.clone(),
                    participant_id: id.clone(),
                    by: command.by.clone(),
                    at: command.at,
                }),
            })
            .collect();
        events.push(RoomEvent::RoomEnded(RoomEnded {
            room_id,
            ended_at: command.at,
            ended_by: command.by,
        }));
        Ok(events)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::room::create::tests::{configured, created, AT};
    use crate::RoomCommand;

    pub(crate) fn ended() -> RoomEvent {
        RoomEvent::RoomEnded(RoomEnded {
            room_id: "room-1".into(),
            ended_at: AT,
            ended_by: "user-1".into(),
        })
    }

    fn end(by: &str) -> RoomCommand {
        RoomCommand::EndRoom(EndRoom {
            by: by.into(),
            at: AT,
        })
    }

    #[tokio::test]
    async fn the_host_ends_the_room() {
        TestFramework::<Room>::with(())
            .given(vec![created("Meeting Room"), configured(false, 50)])
            .when_async(end("user-1"))
            .await
            .then_expect_events(vec![ended()]);
    }

    #[tokio::test]
    async fn ending_an_ended_room_changes_nothing() {
        TestFramework::<Room>::with(())
            .given(vec![
                created("Meeting Room"),
                configured(false, 50),
                ended(),
            ])
            .when_async(end("user-1"))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn only_the_host_ends_the_room() {
        TestFramework::<Room>::with(())
            .given(vec![created("Meeting Room"), configured(false, 50)])
            .when_async(end("user-2"))
            .await
            .then_expect_error(RoomError::NotHost);
    }

    #[tokio::test]
    async fn an_unknown_room_is_not_found() {
        TestFramework::<Room>::with(())
            .given_no_previous_events()
            .when_async(end("user-1"))
            .await
            .then_expect_error(RoomError::NotFound);
    }
}
