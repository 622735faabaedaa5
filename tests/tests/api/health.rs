use veldwerk_tests::db_test;

use crate::openapi::served_spec;

db_test!(async fn health_docs_and_spec_are_served(app) {
    let reply = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.json::<serde_json::Value>().await.unwrap()["status"], "ok");

    let spec = served_spec(&app).await;
    assert_eq!(spec["info"]["title"], "Veldwerk API");
    for path in ["/auth/login", "/auth/enrol", "/auth/refresh", "/cohorts/{id}/invites"] {
        assert!(spec["paths"][path].is_object(), "the spec documents {path}");
    }
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
    // The spec is served in production too: its examples must not be working logins.
    assert!(!spec.to_string().contains("demo-trainer-wachtwoord"), "no demo credentials in the spec");
    for schema in ["LoginRequest", "EnrolRequest", "CreateCohortRequest", "ErrorBody"] {
        assert!(
            spec["components"]["schemas"][schema]["example"].is_object(),
            "{schema} has an example"
        );
    }

    let docs = app
        .client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
});

db_test!(async fn readiness_reports_the_database_and_turns_false_while_draining(app) {
    let get = |path: &'static str| {
        app.client
            .get(format!("{}{path}", app.address))
            .header("x-request-id", "req-123")
            .send()
    };
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["x-request-id"], "req-123", "the request id is echoed");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database_reachable"], true);
    assert_eq!(body["checks"]["pending_migrations"], 0);

    let fresh = get("/healthz").await.unwrap();
    assert!(!fresh.headers()["x-request-id"].is_empty());

    app.services.start_draining();
    let draining = get("/readyz").await.unwrap();
    assert_eq!(draining.status(), 503);
    let body: serde_json::Value = draining.json().await.unwrap();
    assert_eq!(body["code"], "not_ready");
    assert_eq!(body["details"]["draining"], true);
    // Still alive, and still serving, while it drains.
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
});

db_test!(async fn metrics_count_requests_sync_and_streams(app) {
    let (mut phone, cohort, trainer) = crate::sync::phone(&app, "Sanne").await;
    app.get(&format!("/v1/cohorts/{cohort}"), &trainer.token).await.expect(200);
    phone.write(
        "interviews",
        uuid::Uuid::now_v7(),
        Some(cohort),
        serde_json::json!({ "name_consent": false, "status": "draft" }),
    );
    phone.write("interviews", uuid::Uuid::now_v7(), Some(cohort), serde_json::json!({ "status": "nope" }));
    phone.sync().await.unwrap();
    let mut live =
        veldwerk_tests::LiveStream::open(&app.client, &app.address, phone.debug_token()).await;
    live.next_event("ready").await;

    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        r#"veldwerk_http_requests_total{method="GET",route="/v1/cohorts/{id}",status="200"} 1"#,
        "veldwerk_sync_pushes_total 1",
        "veldwerk_sync_mutations_applied_total 1",
        "veldwerk_sync_mutations_rejected_total 1",
        "veldwerk_sync_open_streams 1",
        "veldwerk_outbox_pending 0",
        "# TYPE veldwerk_http_request_duration_seconds histogram",
        "veldwerk_db_pool_connections",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(text.contains("veldwerk_sync_pulls_total"));
    drop(live);
});

db_test!(async fn live_streams_are_told_to_reconnect_when_the_server_drains(app) {
    let (phone, _, _) = crate::sync::phone(&app, "Sanne").await;
    let mut live =
        veldwerk_tests::LiveStream::open(&app.client, &app.address, phone.debug_token()).await;
    let hello = live.next_event("ready").await;
    assert!(hello.contains("retry: 3000"), "a reconnect hint comes first: {hello:?}");
    app.services.start_draining();
    let ended = live.until_closed().await;
    assert!(ended.contains("event: reconnect"), "{ended:?}");
});

// Every operation declared in `server/src/api` is in the spec, under a unique operationId and
// with a summary. Two API groups declaring the same path once hid `GET /me` from the spec
// (poem-openapi kept one group's methods for it), while the router still served it.
db_test!(async fn every_declared_operation_is_in_the_spec_with_a_unique_id(app) {
    let spec = served_spec(&app).await;
    let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src/api");
    let mut declared = Vec::new();
    for entry in std::fs::read_dir(api).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        // `#[oai(path = "/cohorts/:id", method = "get", ...)]`, on one line or several.
        let flat = source.split_whitespace().collect::<Vec<_>>().join(" ");
        for attribute in flat.split("#[oai(").skip(1) {
            let attribute = attribute.split(")]").next().unwrap();
            let value = |key: &str| {
                let start = attribute.find(&format!("{key} = \""))? + key.len() + 4;
                Some(attribute[start..].split('"').next()?.to_owned())
            };
            if let (Some(path), Some(method)) = (value("path"), value("method")) {
                let path = path
                    .split('/')
                    .map(|part| match part.strip_prefix(':') {
                        Some(name) => format!("{{{name}}}"),
                        None => part.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                declared.push((path, method));
            }
        }
    }
    assert!(declared.len() > 40, "{declared:?}");
    let mut ids = std::collections::BTreeSet::new();
    for (path, method) in &declared {
        let operation = &spec["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is missing from the spec");
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(operation["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path} has no summary");
    }
    // Besides those, the sync and attachment operations `api::sync_spec` describes (plain poem
    // handlers), tagged as such; `openapi.rs` and schemathesis check them against the server.
    let described = spec["paths"].as_object().unwrap().values()
        .flat_map(|p| p.as_object().unwrap().values())
        .filter(|op| op["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == "Sync" || t == "Attachments")))
        .count();
    assert_eq!(described, 9, "push, pull, events; an attachment's state, download, offset, upload, options, finish");
    let in_spec: usize = spec["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(in_spec, declared.len() + described, "the spec has operations the sources do not declare");
});
