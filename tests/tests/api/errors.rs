//! Bad input gets a 4xx in the one JSON error shape, never a 500, and changes nothing.

use reqwest::Method;
use serde_json::json;
use veldwerk_tests::db_test;

use crate::fixtures::{demo_admin, demo_trainer};

db_test!(async fn malformed_requests_get_clear_errors_in_one_shape(app) {
    let admin = demo_admin(&app).await;
    let raw = |path: &str, body: &'static str| {
        app.client
            .post(format!("{}{path}", app.address))
            .bearer_auth(&admin.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, what) in [
        ("{not json", "malformed JSON"),
        (r#"{"name": ["Gemeente"]}"#, "a wrong type"),
        (r#"{"name": "X", "colour": "red"}"#, "an unknown field"),
        (r#"{}"#, "a missing field"),
    ] {
        let reply = raw("/v1/organisations", body).await.unwrap();
        assert_eq!(reply.status(), 400, "{what}");
        let error: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(error["code"], "invalid_body", "{what}: {error}");
        assert!(error["message"].as_str().unwrap().len() > 10, "{what}: {error}");
    }
    let organisations = app.get("/v1/organisations", &admin.token).await.expect(200);
    assert_eq!(organisations.as_array().unwrap().len(), 1, "no bad request stored anything");
    let trainer = demo_trainer(&app).await;
    app.get("/v1/cohorts/not-a-uuid", &trainer.token)
        .await
        .expect_error(400, "invalid_parameter");
    app.get("/v1/cohorts?organisation_id=nope", &trainer.token)
        .await
        .expect_error(400, "invalid_parameter");
    app.get("/v1/no-such-thing", &trainer.token).await.expect_error(404, "not_found");
    app.call(Method::PUT, "/v1/organisations", Some(&trainer.token), Some(json!({})))
        .await
        .expect_error(405, "method_not_allowed");
    let no_content_type = app
        .client
        .post(format!("{}/v1/auth/login", app.address))
        .body("email=x")
        .send()
        .await
        .unwrap();
    assert_eq!(no_content_type.status(), 415);
});

db_test!(async fn missing_or_bad_tokens_get_401(app) {
    app.call(Method::GET, "/v1/me", None, None).await.expect_error(401, "unauthenticated");
    app.get("/v1/me", "garbage").await.expect_error(401, "invalid_token");
    let trainer = demo_trainer(&app).await;
    let mut forged = trainer.token.clone();
    forged.pop();
    app.get("/v1/me", &forged).await.expect_error(401, "invalid_token");
});

db_test!(async fn oversized_bodies_get_413_and_nothing_is_stored(app) with |config| {
    config.max_body_bytes = 2048;
}; {
    let admin = demo_admin(&app).await;
    let big_name = "x".repeat(4096);
    app.post("/v1/organisations", Some(&admin.token), json!({ "name": big_name }))
        .await
        .expect_error(413, "body_too_large");
    // The same body streamed without a Content-Length is bounded too.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
        format!(r#"{{"name": "{big_name}"}}"#).into_bytes(),
    )]);
    let reply = app
        .client
        .post(format!("{}/v1/organisations", app.address))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
    let organisations = app.get("/v1/organisations", &admin.token).await.expect(200);
    assert_eq!(organisations.as_array().unwrap().len(), 1, "only the demo municipality exists");
});
