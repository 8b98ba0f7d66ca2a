//! Deployments and tokens over HTTP (admin tokens only), for a running server. The same
//! operations are CLI commands (`assetlog deployment`, `assetlog token`) on a stopped store.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AppState, Caller, Error};
use crate::auth::Role;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDeployment {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub deployment: String,
    pub role: Role,
    pub label: Option<String>,
}

/// Deployment names: 1-63 of `a-z 0-9 - _`, starting with a letter or digit.
pub fn check_deployment_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "deployment name {name:?} must be 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
        ))
    }
}

fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, Error> {
    body.map(|Json(b)| b)
        .map_err(|e| Error::BadRequest(e.body_text()))
}

pub async fn create_deployment(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewDeployment>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    caller.require_admin()?;
    let d = json_body(body)?;
    check_deployment_name(&d.name).map_err(Error::BadRequest)?;
    let (id, created) = state.log.ensure_deployment(&d.name)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"name": d.name, "id": id, "created": created})),
    ))
}

pub async fn list_deployments(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Error> {
    caller.require_admin()?;
    let deps: Vec<Value> = state
        .log
        .deployments()?
        .into_iter()
        .map(|(name, id)| json!({"name": name, "id": id}))
        .collect();
    Ok(Json(json!({"deployments": deps})))
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewToken>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    caller.require_admin()?;
    let t = json_body(body)?;
    let (secret, record) = state.tokens.create(&t.deployment, t.role, t.label)?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"token": secret, "id": record.id, "deployment": record.deployment_name, "role": record.role}),
        ),
    ))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, Error> {
    caller.require_admin()?;
    let tokens: Vec<Value> = state
        .tokens
        .list()?
        .into_iter()
        .map(|t| json!({"id": t.id, "deployment": t.deployment_name, "role": t.role,
                        "label": t.label, "created": crate::event::json::format_timestamp(t.created_us)}))
        .collect();
    Ok(Json(json!({"tokens": tokens})))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    caller.require_admin()?;
    state.tokens.revoke(&id)?;
    Ok(StatusCode::NO_CONTENT)
}
