use veldwerk_tests::db_test;

db_test!(async fn health_docs_and_spec_are_served(app) {
    let reply = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.json::<serde_json::Value>().await.unwrap()["status"], "ok");

    let spec: serde_json::Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["info"]["title"], "Veldwerk API");
    for path in ["/auth/login", "/auth/enrol", "/auth/refresh", "/cohorts/{id}/invites"] {
        assert!(spec["paths"][path].is_object(), "the spec documents {path}");
    }
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
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
