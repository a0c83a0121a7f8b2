//! The participants resource: joining by room code, the participant list, the waiting room
//! (admit, deny), and leaving.

use aggregates::{
    text, Actor, Decide, DenyWaiting, Host, JoinRoom, Joiner, RemoveParticipant, RoomCode,
    RoomCommand, RoomError, RoomEvent, Status, MAX_DISPLAY_NAME_CHARS,
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
use super::rooms::{find_room, optional_timestamp, timestamp};
use super::{request_id, ApiError, AppState, Credential, MaybeCaller, WithPass};
use crate::auth::{JOIN_AUDIENCE, WAITING_AUDIENCE};
use crate::commands::{self, CommandError};
use crate::read_models::{participants, rooms};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(join_room))
        .routes(routes!(list_participants))
        .routes(routes!(admit))
        .routes(routes!(deny))
        .routes(routes!(remove, get_participant))
        .routes(routes!(deny_all))
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
        (status = 403, description = "The room is locked, admits no guests, or its host blocked the caller (problem type `blocked`).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No room has this code.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The room is full, or its waiting room (500 places, at most 250 of them guests) is.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The room has ended.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RateLimited,
        crate::http::problem::SlowBody,
        crate::http::problem::Unavailable,
    )
)]
async fn join_room(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Path(code): Path<String>,
    MaybeJsonObject(body): MaybeJsonObject,
) -> Result<Response, ApiError> {
    let mut fields = Fields::new(body, Nulls::Rejected);
    // Checked here too (the room checks it again) to be named beside the other fields' errors.
    let display_name = fields
        .string("displayName")
        .map(|name| text::normalized(&name));
    if let Some(name) = &display_name {
        fields.extend(text::violation("displayName", name, MAX_DISPLAY_NAME_CHARS));
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
            let host = claims.host(state.tokens.shows_email());
            Joiner::User(Host {
                display_name: display_name.unwrap_or(host.display_name),
                ..host
            })
        }
        None => Joiner::Guest {
            display_name: display_name.unwrap_or_default(),
            // The client's network as the rate limits see it (behind a trusted proxy, the
            // address it forwards), so that a block holds the guest, not the proxy.
            origin: peer.map(|peer| {
                let client =
                    super::client_address(peer.0 .0.ip(), &headers, &state.trusted_proxies);
                state.tokens.origin(&room.id, client)
            }),
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
    Ok((status, Json(Joined::of(&state, participant)?)).into_response())
}

impl Joined {
    /// A participant with their credential: a join token once joined, a waiting pass while
    /// waiting (the waiting room cannot be walked past with it).
    pub(super) fn of(state: &AppState, participant: ParticipantView) -> Result<Self, ApiError> {
        let audience = match participant.status {
            Status::Joined => JOIN_AUDIENCE,
            Status::Waiting => WAITING_AUDIENCE,
        };
        let (token, expires) = state
            .tokens
            .mint_join(
                audience,
                &participant.id,
                &participant.room_id,
                participants::role_text(participant.role),
            )
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        let (join_token, waiting_pass) = match participant.status {
            Status::Joined => (Some(token), None),
            Status::Waiting => (None, Some(token)),
        };
        Ok(Self {
            participant: ParticipantBody::from(participant),
            join_token,
            waiting_pass,
            expires_at: DateTime::from_timestamp(expires as i64, 0),
        })
    }
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
        crate::http::problem::RoomNotFound,
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
        let me = caller_participant(&state, &credential, &id).await?;
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
        crate::http::problem::ParticipantNotFound,
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
        crate::http::problem::ParticipantNotFound,
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

/// Leave, or remove (and block) a participant
///
/// A participant leaves (with their user token or join token), or the host removes them. With
/// `block=true` (host only) they cannot come back for the room's life: a user by their id
/// (403 `blocked` on their next join), a guest by the network they joined from (guest joins
/// from it are refused). A `ParticipantBlocked` event records it.
#[utoipa::path(
    delete,
    path = "/rooms/{id}/participants/{pid}",
    tag = "participants",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Room id"),
        ("pid" = String, Path, description = "Participant id"),
        ("block" = Option<bool>, Query, description = "`true`: the host keeps them out of this room for good. Default `false`."),
    ),
    responses(
        (status = 204, description = "Gone from the room."),
        (status = 400, description = "Invalid query parameter.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "Neither the participant nor the room's host; or a block by anyone but the host, or of the host.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::ParticipantNotFound,
        crate::http::problem::Unavailable,
    )
)]
async fn remove(
    State(state): State<AppState>,
    credential: WithPass,
    headers: HeaderMap,
    Path((id, pid)): Path<(String, String)>,
    query: RawParams,
) -> Result<StatusCode, ApiError> {
    let mut params = Params::new(query)?;
    let block = params.one_of("block", &["true", "false"], "false") == "true";
    params.finish()?;
    find_room(&state, &id).await?;
    let credential = match credential {
        // A waiting participant leaves the waiting room with their pass.
        WithPass::Pass(pass) if pass.room == id => {
            return leave(
                &state,
                &headers,
                &id,
                pid,
                Actor::Participant(pass.sub),
                block,
            )
            .await
        }
        WithPass::Pass(_) => return Err(other_rooms_pass()),
        WithPass::Credential(credential) => credential,
    };
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
    leave(&state, &headers, &id, pid, by, block).await
}

async fn leave(
    state: &AppState,
    headers: &HeaderMap,
    room_id: &str,
    participant_id: String,
    by: Actor,
    block: bool,
) -> Result<StatusCode, ApiError> {
    let command = RoomCommand::RemoveParticipant(RemoveParticipant {
        by,
        participant_id,
        block,
        at: commands::now(),
    });
    state
        .commands
        .execute(room_id, command, request_id(headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn other_rooms_pass() -> ApiError {
    ApiError::Forbidden("this waiting pass is for another room".into())
}

/// A participant
///
/// For the host, for joined participants of the room, and for the participant themselves
/// (with their user token, join token or waiting pass). For themselves, once joined, it carries
/// a fresh `joinToken`: this is how a waiting participant whom the host admitted gets one.
#[utoipa::path(
    get,
    path = "/rooms/{id}/participants/{pid}",
    tag = "participants",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id"), ("pid" = String, Path, description = "Participant id")),
    responses(
        (status = 200, description = "`{\"participant\"}`; for the participant themselves, also `joinToken` once joined (or `waitingPass` while waiting) and `expiresAt`.", body = Joined),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "Neither the host, a joined participant, nor the participant themselves.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or no such participant in it (one who left or was denied is gone).", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unavailable,
    )
)]
async fn get_participant(
    State(state): State<AppState>,
    credential: WithPass,
    Path((id, pid)): Path<(String, String)>,
) -> Result<Json<Joined>, ApiError> {
    let room = find_room(&state, &id).await?;
    let themselves = match &credential {
        WithPass::Pass(pass) if pass.room == id => pass.sub == pid,
        WithPass::Pass(_) => return Err(other_rooms_pass()),
        WithPass::Credential(Credential::Participant(join)) if join.room == id => join.sub == pid,
        WithPass::Credential(_) => false,
    };
    let find = || async {
        participants::find(&state.pool, &id, &pid)
            .await?
            .ok_or_else(no_such_participant)
    };
    if themselves {
        return Ok(Json(Joined::of(&state, find().await?)?));
    }
    let WithPass::Credential(credential) = &credential else {
        return Err(ApiError::Forbidden(
            "a waiting pass shows only its own participant".into(),
        ));
    };
    let me = caller_participant(&state, credential, &id).await?;
    if me.as_ref().is_some_and(|me| me.id == pid) {
        return Ok(Json(Joined::of(&state, find().await?)?));
    }
    let host = acting_user(&state, credential, &id).await?.as_deref() == Some(&room.host_id);
    if !host && !me.is_some_and(|me| me.status == Status::Joined) {
        return Err(ApiError::Forbidden(
            "only the host and the room's joined participants see its participants".into(),
        ));
    }
    Ok(Json(Joined {
        participant: ParticipantBody::from(find().await?),
        join_token: None,
        waiting_pass: None,
        expires_at: None,
    }))
}

/// How many knocks a deny-all denied.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeniedAll {
    denied: usize,
}

/// Deny everyone waiting
///
/// The host denies every participant of the waiting room at once: one command, one
/// transaction, a `ParticipantDenied` event each (in the order they knocked).
#[utoipa::path(
    post,
    path = "/rooms/{id}/waiting/deny-all",
    tag = "participants",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id")),
    responses(
        (status = 200, description = "How many were denied (0 when nobody waited).", body = DeniedAll,
            example = json!({"denied": 42})),
        crate::http::problem::Unauthenticated,
        (status = 403, description = "Not the room's host.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::RoomNotFound,
        (status = 409, description = "The room has ended.", body = Problem, content_type = "application/problem+json"),
        crate::http::problem::Unavailable,
    )
)]
async fn deny_all(
    State(state): State<AppState>,
    credential: Credential,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<DeniedAll>, ApiError> {
    find_room(&state, &id).await?;
    let Some(by) = acting_user(&state, &credential, &id).await? else {
        return Err(ApiError::Forbidden(
            "only the room's host may do this".into(),
        ));
    };
    let command = RoomCommand::DenyWaiting(DenyWaiting {
        by,
        at: commands::now(),
    });
    let events = state
        .commands
        .execute(&id, command, request_id(&headers))
        .await?;
    Ok(Json(DeniedAll {
        denied: events.len(),
    }))
}

/// Who calls, as a participant of room `room_id` (a signed-in user by their id, a join token by
/// its participant), if they are one.
pub(super) async fn caller_participant(
    state: &AppState,
    credential: &Credential,
    room_id: &str,
) -> Result<Option<ParticipantView>, ApiError> {
    Ok(match credential {
        Credential::User(claims) => {
            participants::find_user(&state.pool, room_id, &claims.sub).await?
        }
        Credential::Participant(join) if join.room == room_id => {
            participants::find(&state.pool, room_id, &join.sub).await?
        }
        Credential::Participant(_) => None,
    })
}

fn no_such_participant() -> ApiError {
    ApiError::NotFound("no such participant in this room".into())
}

/// The body of a join: the display name, required for guests.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct JoinRequest {
    /// 1 to 50 characters once NFC-normalised and trimmed; no control, bidirectional or
    /// invisible format characters, and no host marker such as "(Host)" unless the caller
    /// hosts the room. For users, it replaces the name from the token in this room.
    #[schema(nullable = false, min_length = 1, max_length = 50)]
    display_name: Option<String>,
}

/// A participant and their credential: `joinToken` once joined, `waitingPass` while waiting
/// (exactly one of the two).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"participant": participant_example(),
    "joinToken": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIwMWEyLi4uIn0.c2lnbmF0dXJl",
    "expiresAt": "2026-03-03T14:30:00.000Z"}))]
pub(super) struct Joined {
    participant: ParticipantBody,
    /// For a joined participant: HS256 JWT, `aud` `neuronmeet:room`, `sub` the participant,
    /// `room`, `role`; valid 4 h. What the signalling and media layers accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    join_token: Option<String>,
    /// For a waiting participant: the same shape with `aud` `neuronmeet:waiting`, good only for
    /// `GET /rooms/{id}/participants/{pid}` (which gives the join token once admitted) and
    /// leaving (`DELETE`), for themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_pass: Option<String>,
    /// When the token or pass expires (with one of them).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_timestamp"
    )]
    #[schema(value_type = Option<String>, format = DateTime, nullable = false)]
    expires_at: Option<DateTime<Utc>>,
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
