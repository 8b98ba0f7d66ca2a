//! Tokens, roles and tenant isolation over a real loopback socket.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn tokens_roles_and_deployments_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let c = client();
    let body = serde_json::to_vec(&vec![mat("a-1")]).unwrap();

    // 401: no token, malformed header, unknown token.
    let r = c
        .post(server.url("/api/v1/events"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "missing_token");
    let r = c
        .post(server.url("/api/v1/events"))
        .header("authorization", "Basic abc")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, v) = post_events(&server, "alog_000000000000_deadbeef", body.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("bad_token"))
    );

    // Two tenants: A (agent, viewer) and B (agent, viewer).
    let (agent_a, _) = token_for(&server, "team-a", "agent").await;
    let (viewer_a, _) = token_for(&server, "team-a", "viewer").await;
    let (agent_b, agent_b_id) = token_for(&server, "team-b", "agent").await;
    let (viewer_b, _) = token_for(&server, "team-b", "viewer").await;

    let (status, v) = post_events(&server, &agent_a, body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stored"], 1);

    // 403: a viewer writing.
    let (status, v) = post_events(
        &server,
        &viewer_a,
        serde_json::to_vec(&vec![mat("v-1")]).unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("viewer token cannot write"),
        "{v}"
    );

    // 403: any token naming another deployment, for reads and writes.
    for (token, method) in [(&agent_b, "POST"), (&viewer_b, "GET"), (&agent_a, "GET")] {
        let req = if method == "POST" {
            c.post(server.url("/api/v1/events")).body(body.clone())
        } else {
            c.get(server.url("/api/v1/events"))
        };
        let other = if token == &agent_a {
            "team-b"
        } else {
            "team-a"
        };
        let r = req
            .bearer_auth(token)
            .header("assetlog-deployment", other)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} naming {other}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot touch deployment"),
            "{v}"
        );
    }
    // Naming one's own deployment is fine.
    let r = c
        .get(server.url("/api/v1/events"))
        .bearer_auth(&viewer_a)
        .header("assetlog-deployment", "team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // B writes an event with the same id as A's: a different event in another tenant.
    let (status, v) = post_events(
        &server,
        &agent_b,
        serde_json::to_vec(&vec![mat("a-1"), mat("b-1")]).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stored"], 2);

    // Every read the server has: A sees only A's, B only B's, whatever the filter.
    let a_ids: Vec<Value> = read_all(&server, &viewer_a)
        .await
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(a_ids, vec![json!("a-1")]);
    let b_ids: Vec<Value> = read_all(&server, &viewer_b)
        .await
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(b_ids, vec![json!("a-1"), json!("b-1")]);
    let r: Value = c
        .get(server.url("/api/v1/events?run_id=run-1"))
        .bearer_auth(&viewer_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["events"].as_array().unwrap().len(), 1);
    let r: Value = c
        .get(server.url("/api/v1/events?from=1&limit=10"))
        .bearer_auth(&agent_b)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["events"].as_array().unwrap().len(), 2);

    // Admin routes need an admin token.
    for token in [&agent_a, &viewer_b] {
        let r = c
            .get(server.url("/api/v1/tokens"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = c
            .post(server.url("/api/v1/deployments"))
            .bearer_auth(token)
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let tokens: Value = c
        .get(server.url("/api/v1/tokens"))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 5);
    assert!(
        !tokens.to_string().contains(&agent_b),
        "secrets are never listed"
    );

    // A revoked token is refused at once.
    let r = c
        .delete(server.url(&format!("/api/v1/tokens/{agent_b_id}")))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = post_events(
        &server,
        &agent_b,
        serde_json::to_vec(&vec![mat("b-2")]).unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    let r = c
        .get(server.url("/api/v1/events"))
        .bearer_auth(&agent_b)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Bad deployment names and unknown deployments are clear 4xx.
    let r = c
        .post(server.url("/api/v1/deployments"))
        .bearer_auth(&server.admin)
        .json(&json!({"name": "Bad Name"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(server.url("/api/v1/tokens"))
        .bearer_auth(&server.admin)
        .json(&json!({"deployment": "nope", "role": "agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(server.url("/api/v1/tokens"))
        .bearer_auth(&server.admin)
        .json(&json!({"deployment": "team-a", "role": "root"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
