//! The participants resource: joining by room code, the participant list, the waiting room
//! (admit, deny), and leaving.

use aggregates::{
    Actor, Decide, Host, JoinRoom, Joiner, RemoveParticipant, RoomCode, RoomCommand, RoomError,
    RoomEvent, Status,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use projections::ParticipantView;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::MaybeJsonObject;
use super::fields::{Fields, Nulls};
use super::problem::Problem;
use super::query::{Params, RawParams};
use super::rooms::{find_room, timestamp};
use super::{request_id, ApiError, AppState, Credential, MaybeCaller};
use crate::commands::{self, CommandError};
use crate::read_models::{participants, rooms};

/// Longest guest display name, in characters.
const MAX_DISPLAY_NAME: usize = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(join_room))
        .routes(routes!(list_participants))
        .routes(routes!(admit))
        .routes(routes!(deny))
        .routes(routes!(remove))
}

/// Join a room
///
/// With a user token, the user joins (the host at once, whatever the room's rules); without
/// one, a guest joins under `displayName`. 201 joined, 202 in the waiting room, 200 already in
/// the room (the same participant, a fresh token). The join token authenticates the
/// participant to the signalling and media layers and to the participant endpoints.
#[utoipa::path(
    post,
    path = "/rooms/code/{code}/join",
    tag = "participants",
    security((), ("bearer" = [])),
    params(("code" = String, Path, description = "Room code, `xxx-xxx-xxx`", example = "abc-def-ghi")),
    request_body(content = Option<JoinRequest>, content_type = "application/json",
        description = "Required for guests (no token); optional for users.",
        example = json!({"displayName": "Grace"})),
    responses(
        (status = 200, description = "Already in the room: the same participant, a fresh token.", body = Joined),
        (status = 201, description = "Joined.", body = Joined),
        (status = 202, description = "In the waiting room, until the host admits or denies.", body = Joined),
        (status = 400, description = "Invalid body: each failing field is named in `errors`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "An invalid token (a request without one joins as a guest).", body = Problem,
            content_type = "application/problem+json", headers(("WWW-Authenticate" = String))),
        (status = 403, description = "The room is locked, or admits no guests.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No room has this code.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The room is full.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The room has ended.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RateLimited,
        crate::http::problem::SlowBody,
        crate::http::problem::Unavailable,
    )
)]
async fn join_room(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Path(code): Path<String>,
    MaybeJsonObject(body): MaybeJsonObject,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(body, Nulls::Rejected);
    let display_name = fields.string("displayName");
    if let Some(name) = &display_name {
        let chars = name.chars().count();
        if !(1..=MAX_DISPLAY_NAME).contains(&chars) || name.contains('\0') {
            fields.extend([aggregates::FieldViolation::new(
                "displayName",
                format!("must be 1 to {MAX_DISPLAY_NAME} characters"),
            )]);
        }
    }
    if caller.is_none() && display_name.is_none() {
        fields.extend([aggregates::FieldViolation::new(
            "displayName",
            "is required to join as a guest (without a token)",
        )]);
    }
    fields.finish()?;

    let not_found = || ApiError::NotFound(format!("no room has code {code}"));
    RoomCode::parse(&code).map_err(|_| not_found())?;
    let room = rooms::find_by_code(&state.pool, &code)
        .await?
        .ok_or_else(not_found)?;
    let participant_id = uuid::Uuid::now_v7().to_string();
    let joiner = match &caller {
        Some(claims) => {
            let host = claims.host();
            Joiner::User(Host {
                display_name: display_name.unwrap_or(host.display_name),
                ..host
            })
        }
        None => Joiner::Guest {
            display_name: display_name.unwrap_or_default(),
        },
    };
    let command = RoomCommand::JoinRoom(JoinRoom {
        participant_id: participant_id.clone(),
        joiner,
        at: commands::now(),
    });
    // The answer comes from what the command decided, not from the read model after it: the
    // participant may have left (or the room ended) in between.
    let mut participant = None;
    for _ in 0..3 {
        let events = state
            .commands
            .execute(&room.id, command.clone(), request_id(&headers))
            .await
            .map_err(|error| match error {
                CommandError::Rejected(RoomError::Ended) => {
                    ApiError::Gone("the room has ended".into())
                }
                error => error.into(),
            })?;
        participant = match events.first() {
            Some(RoomEvent::ParticipantJoined(entered)) => {
                Some(ParticipantView::entered(entered, Status::Joined))
            }
            Some(RoomEvent::ParticipantWaiting(entered)) => {
                Some(ParticipantView::entered(entered, Status::Waiting))
            }
            // Already in the room: as the read model has them, unless they just left, and
            // then they join anew.
            _ => match &caller {
                Some(claims) => participants::find_user(&state.pool, &room.id, &claims.sub).await?,
                None => None,
            },
        };
        if participant.is_some() {
            break;
        }
    }
    let participant = participant
        .ok_or_else(|| ApiError::Conflict("the room changed too often; retry".into()))?;
    let status = match (participant.id == participant_id, participant.status) {
        (false, _) => StatusCode::OK,
        (true, Status::Joined) => StatusCode::CREATED,
        (true, Status::Waiting) => StatusCode::ACCEPTED,
    };
    let (join_token, expires) = state
        .tokens
        .mint_join(
            &participant.id,
            &room.id,
            participants::role_text(participant.role),
        )
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let expires_at = DateTime::from_timestamp(expires as i64, 0).unwrap_or_default();
    Ok((
        status,
        Json(Joined {
            participant: ParticipantBody::from(participant),
            join_token,
            expires_at,
        }),
    )
        .into_response())
}

/// The participants
///
/// Joined participants in the order they joined, for the host or a joined participant (by user
/// or join token); `?status=waiting`, the waiting room, for the host.
#[utoipa::path(
    get,
    path = "/rooms/{id}/participants",
    tag = "participants",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Room id"),
        ("status" = inline(Option<ListedStatus>), Query, description = "`joined` (default) or `waiting` (host only)."),
    ),
    responses(
        (status = 200, description = "The participants.", body = ParticipantList),
        (status = 400, description = "Invalid query parameter.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "Neither the host nor a joined participant of this room.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No room has this id.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unavailable,
    )
)]
async fn list_participants(
    State(state): State<AppState>,
    credential: Credential,
    Path(id): Path<String>,
    query: RawParams,
) -> Result<Json<ParticipantList>, ApiError> {
    let mut params = Params::new(query)?;
    let status = match params.one_of("status", &["joined", "waiting"], "joined") {
        "waiting" => Status::Waiting,
        _ => Status::Joined,
    };
    params.finish()?;
    let room = find_room(&state, &id).await?;
    let host = acting_user(&state, &credential, &id).await?.as_deref() == Some(&room.host_id);
    if !host {
        let me = match &credential {
            Credential::User(claims) => {
                participants::find_user(&state.pool, &id, &claims.sub).await?
            }
            Credential::Participant(join) if join.room == id => {
                participants::find(&state.pool, &id, &join.sub).await?
            }
            Credential::Participant(_) => None,
        };
        let joined = me.is_some_and(|p| p.status == Status::Joined);
        if !joined || status == Status::Waiting {
            return Err(ApiError::Forbidden(
                "only the host, or a joined participant for the joined list, may see this".into(),
            ));
        }
    }
    let items = participants::list(&state.pool, &id, status)
        .await?
        .into_iter()
        .map(ParticipantBody::from)
        .collect();
    Ok(Json(ParticipantList { items }))
}

/// Admit a participant
///
/// The host lets a participant in from the waiting room.
#[utoipa::path(
    post,
    path = "/rooms/{id}/participants/{pid}/admit",
    tag = "participants",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id"), ("pid" = String, Path, description = "Participant id")),
    responses(
        (status = 200, description = "The participant, now joined.", body = ParticipantBody),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "The caller is not the room's host.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or no such participant in it.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The room is full.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unavailable,
    )
)]
async fn admit(
    state: State<AppState>,
    caller: Credential,
    headers: HeaderMap,
    path: Path<(String, String)>,
) -> Result<Json<ParticipantBody>, ApiError> {
    decide(state, caller, headers, path, true).await
}

/// Deny a participant
///
/// The host turns a participant of the waiting room away.
#[utoipa::path(
    post,
    path = "/rooms/{id}/participants/{pid}/deny",
    tag = "participants",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id"), ("pid" = String, Path, description = "Participant id")),
    responses(
        (status = 200, description = "The participant, now denied (and gone from the room).", body = ParticipantBody),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "The caller is not the room's host.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or no such participant in it.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The participant is not waiting.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unavailable,
    )
)]
async fn deny(
    state: State<AppState>,
    caller: Credential,
    headers: HeaderMap,
    path: Path<(String, String)>,
) -> Result<Json<ParticipantBody>, ApiError> {
    decide(state, caller, headers, path, false).await
}

async fn decide(
    State(state): State<AppState>,
    credential: Credential,
    headers: HeaderMap,
    Path((id, pid)): Path<(String, String)>,
    admit: bool,
) -> Result<Json<ParticipantBody>, ApiError> {
    let room = find_room(&state, &id).await?;
    let by = acting_user(&state, &credential, &id).await?;
    let Some(by) = by.filter(|user| *user == room.host_id) else {
        return Err(ApiError::Forbidden(
            "only the room's host may admit or deny".into(),
        ));
    };
    let before = participants::find(&state.pool, &id, &pid)
        .await?
        .ok_or_else(no_such_participant)?;
    let decision = Decide {
        by,
        participant_id: pid.clone(),
        at: commands::now(),
    };
    let command = if admit {
        RoomCommand::AdmitParticipant(decision)
    } else {
        RoomCommand::DenyParticipant(decision)
    };
    let events = state
        .commands
        .execute(&id, command, request_id(&headers))
        .await?;
    let mut answer = match events.first() {
        Some(RoomEvent::ParticipantAdmitted(admitted)) => {
            ParticipantBody::from(before.admitted(admitted.at))
        }
        Some(RoomEvent::ParticipantDenied(_)) => ParticipantBody::from(before),
        // Admitted already, by a command decided before this one (perhaps after `before` was
        // read): as the read model has them since, written with that command's events.
        _ => participants::find(&state.pool, &id, &pid)
            .await?
            .map(ParticipantBody::from)
            .ok_or_else(no_such_participant)?,
    };
    if !admit {
        answer.status = "denied";
    }
    Ok(Json(answer))
}

/// Who acts, as a user: a user token's subject; a join token of this room acts as the user
/// behind its participant (the host with their join token is the host), a guest as nobody.
async fn acting_user(
    state: &AppState,
    credential: &Credential,
    room_id: &str,
) -> Result<Option<String>, ApiError> {
    Ok(match credential {
        Credential::User(claims) => Some(claims.sub.clone()),
        Credential::Participant(join) if join.room == room_id => {
            participants::find(&state.pool, room_id, &join.sub)
                .await?
                .and_then(|p| p.user_id)
        }
        Credential::Participant(_) => None,
    })
}

/// Leave, or remove a participant
///
/// A participant leaves (with their user token or join token), or the host removes them.
#[utoipa::path(
    delete,
    path = "/rooms/{id}/participants/{pid}",
    tag = "participants",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id"), ("pid" = String, Path, description = "Participant id")),
    responses(
        (status = 204, description = "Gone from the room."),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "Neither the participant nor the room's host.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or no such participant in it.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unavailable,
    )
)]
async fn remove(
    State(state): State<AppState>,
    credential: Credential,
    headers: HeaderMap,
    Path((id, pid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    find_room(&state, &id).await?;
    let by = match &credential {
        Credential::User(claims) => Actor::User(claims.sub.clone()),
        Credential::Participant(join) if join.room != id => {
            return Err(ApiError::Forbidden(
                "this join token is for another room".into(),
            ))
        }
        // A signed-in participant (the host, say) acts as their user; a guest as themself.
        Credential::Participant(join) => match acting_user(&state, &credential, &id).await? {
            Some(user) => Actor::User(user),
            None => Actor::Participant(join.sub.clone()),
        },
    };
    let command = RoomCommand::RemoveParticipant(RemoveParticipant {
        by,
        participant_id: pid,
        at: commands::now(),
    });
    state
        .commands
        .execute(&id, command, request_id(&headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn no_such_participant() -> ApiError {
    ApiError::NotFound("no such participant in this room".into())
}

/// The body of a join: the display name, required for guests.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct JoinRequest {
    /// 1 to 50 characters. For users, it replaces the name from the token in this room.
    #[schema(nullable = false, min_length = 1, max_length = 50)]
    display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"participant": participant_example(),
    "joinToken": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIwMWEyLi4uIn0.c2lnbmF0dXJl",
    "expiresAt": "2026-03-03T14:30:00.000Z"}))]
struct Joined {
    participant: ParticipantBody,
    /// HS256 JWT, `aud` `neuronmeet:room`, `sub` the participant, `room`, `role`; valid 4 h.
    join_token: String,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: DateTime<Utc>,
}

// Documentation only: `Params` reads the query.
/// Which participants to list.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum ListedStatus {
    Joined,
    Waiting,
}

#[derive(Serialize, ToSchema)]
struct ParticipantList {
    items: Vec<ParticipantBody>,
}

fn participant_example() -> serde_json::Value {
    serde_json::json!({"id": "01a217d9-7b1c-7c3e-9d2a-4b5c6d7e8f90", "roomId": "01a217d9-6167-7261-8d7a-f92b31d804e7",
        "displayName": "Grace Hopper", "avatarUrl": null, "role": "member", "status": "joined",
        "muted": false, "joinedAt": "2026-03-03T10:30:00.000Z"})
}

// Documentation only: the participant's role and status, as `ParticipantBody` spells them.
/// `host`, `member` or `guest`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum ParticipantRole {
    Host,
    Member,
    Guest,
}

/// `joined`, `waiting`, or `denied` (in the answer to a deny).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum ParticipantStatus {
    Joined,
    Waiting,
    Denied,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = participant_example)]
struct ParticipantBody {
    id: String,
    room_id: String,
    display_name: String,
    #[schema(required = true)]
    avatar_url: Option<String>,
    #[schema(inline, value_type = ParticipantRole)]
    role: &'static str,
    #[schema(inline, value_type = ParticipantStatus)]
    status: &'static str,
    muted: bool,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    joined_at: DateTime<Utc>,
}

impl From<ParticipantView> for ParticipantBody {
    fn from(view: ParticipantView) -> Self {
        Self {
            role: participants::role_text(view.role),
            status: participants::status_text(view.status),
            id: view.id,
            room_id: view.room_id,
            display_name: view.display_name,
            avatar_url: view.avatar_url,
            muted: view.muted,
            joined_at: view.joined_at,
        }
    }
}
