//! Login, refresh rotation with reuse detection, logout, devices, device linking, rate limits.

use serde_json::json;
use veldwerk_tests::{db_test, veldwerk_server::service::demo};

use crate::fixtures::{User, demo_admin, demo_cohort, demo_trainer, participant};

db_test!(async fn a_trainer_logs_in_and_sees_their_account(app) {
    let session = app.login(demo::TRAINER_EMAIL, demo::TRAINER_PASSWORD).await;
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert_eq!(session["user"]["role"], "trainer");
    let me = app
        .get("/v1/me", session["access_token"].as_str().unwrap())
        .await
        .expect(200);
    assert_eq!(me["email"], demo::TRAINER_EMAIL);
    assert_eq!(me["id"], session["user"]["id"]);
});

db_test!(async fn login_ignores_email_case_and_rejects_wrong_passwords_and_unknown_emails_alike(app) {
    app.login("Trainer@Veldwerk.TEST", demo::TRAINER_PASSWORD).await;
    let wrong = app
        .post("/v1/auth/login", None, json!({ "email": demo::TRAINER_EMAIL, "password": "wrong-password" }))
        .await
        .expect_error(401, "invalid_credentials");
    let unknown = app
        .post("/v1/auth/login", None, json!({ "email": "nobody@veldwerk.test", "password": "wrong-password" }))
        .await
        .expect_error(401, "invalid_credentials");
    assert_eq!(wrong["message"], unknown["message"], "the answer does not reveal which emails exist");
});

db_test!(async fn a_refresh_rotates_the_tokens_and_the_new_ones_work(app) {
    let first = demo_trainer(&app).await;
    let refreshed = app
        .post("/v1/auth/refresh", None, json!({ "refresh_token": first.refresh_token }))
        .await
        .expect(200);
    let second = User::from_session(&refreshed);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.device_id, first.device_id, "a refresh keeps the device");
    app.get("/v1/me", &second.token).await.expect(200);
    // The successor can be refreshed in turn.
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": second.refresh_token }))
        .await
        .expect(200);
});

db_test!(async fn reusing_a_refresh_token_revokes_the_device_but_not_the_others(app) {
    let phone = demo_trainer(&app).await;
    let laptop = demo_trainer(&app).await;
    let thief_copy = phone.refresh_token.clone();
    let first = User::from_session(
        &app.post("/v1/auth/refresh", None, json!({ "refresh_token": phone.refresh_token }))
            .await
            .expect(200),
    );
    // The phone goes on with its successor; then the copy shows up.
    let rotated = User::from_session(
        &app.post("/v1/auth/refresh", None, json!({ "refresh_token": first.refresh_token }))
            .await
            .expect(200),
    );
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": thief_copy }))
        .await
        .expect_error(401, "refresh_token_reused");
    // Both holders of the device's tokens are locked out...
    app.get("/v1/me", &rotated.token).await.expect_error(401, "session_revoked");
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": rotated.refresh_token }))
        .await
        .expect_error(401, "session_revoked");
    // ...while the user's other device is untouched.
    app.get("/v1/me", &laptop.token).await.expect(200);
    let devices = app.get("/v1/me/devices", &laptop.token).await.expect(200);
    let phone_row = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == phone.device_id.as_str())
        .unwrap();
    assert!(phone_row["revoked_at"].is_string());
});

db_test!(async fn a_refresh_whose_answer_was_lost_is_answered_again_with_the_same_successor(app) {
    let phone = demo_trainer(&app).await;
    let refresh = |token: String| {
        let app = &app;
        async move { app.post("/v1/auth/refresh", None, json!({ "refresh_token": token })).await }
    };
    let lost = User::from_session(&refresh(phone.refresh_token.clone()).await.expect(200));
    // The answer never reached the phone; it presents its old token again, twice.
    for _ in 0..2 {
        let again = User::from_session(&refresh(phone.refresh_token.clone()).await.expect(200));
        assert_eq!(again.refresh_token, lost.refresh_token, "the same successor");
        app.get("/v1/me", &again.token).await.expect(200);
    }
    // Two refreshes with one token at once (an app asking twice): both get the successor.
    let (a, b) = tokio::join!(refresh(lost.refresh_token.clone()), refresh(lost.refresh_token.clone()));
    let (a, b) = (User::from_session(&a.expect(200)), User::from_session(&b.expect(200)));
    assert_eq!(a.refresh_token, b.refresh_token);
    // Once the successor has been used, the old token is a stolen copy: the device is revoked.
    let next = User::from_session(&refresh(a.refresh_token.clone()).await.expect(200));
    refresh(lost.refresh_token.clone()).await.expect_error(401, "refresh_token_reused");
    app.get("/v1/me", &next.token).await.expect_error(401, "session_revoked");
});

db_test!(async fn after_the_grace_interval_a_repeated_refresh_is_reuse(app) with |config| {
    config.refresh_reuse_grace_secs = 1;
}; {
    let phone = demo_trainer(&app).await;
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": phone.refresh_token })).await.expect(200);
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": phone.refresh_token }))
        .await
        .expect_error(401, "refresh_token_reused");
    app.get("/v1/me", &phone.token).await.expect_error(401, "session_revoked");
});

db_test!(async fn unknown_refresh_tokens_are_rejected(app) {
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": "not-a-token" }))
        .await
        .expect_error(401, "invalid_refresh_token");
});

db_test!(async fn logout_revokes_the_device_at_once(app) {
    let trainer = demo_trainer(&app).await;
    app.post("/v1/auth/logout", Some(&trainer.token), json!({})).await.expect(204);
    app.get("/v1/me", &trainer.token).await.expect_error(401, "session_revoked");
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": trainer.refresh_token }))
        .await
        .expect_error(401, "session_revoked");
});

db_test!(async fn a_user_lists_and_revokes_their_own_devices_only(app) {
    let phone = demo_trainer(&app).await;
    let laptop = demo_trainer(&app).await;
    let devices = app.get("/v1/me/devices", &laptop.token).await.expect(200);
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(
        devices.iter().filter(|d| d["current"] == true).count(),
        1,
        "exactly the calling device is marked current"
    );
    app.delete(&format!("/v1/me/devices/{}", phone.device_id), &laptop.token)
        .await
        .expect(204);
    app.get("/v1/me", &phone.token).await.expect_error(401, "session_revoked");
    // Revoking again is harmless; someone else's device is not found and keeps working.
    app.delete(&format!("/v1/me/devices/{}", phone.device_id), &laptop.token)
        .await
        .expect(204);
    let admin = demo_admin(&app).await;
    app.delete(&format!("/v1/me/devices/{}", admin.device_id), &laptop.token)
        .await
        .expect_error(404, "not_found");
    app.get("/v1/me", &admin.token).await.expect(200);
});

db_test!(async fn a_participant_links_a_tablet_with_a_single_use_code(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let phone = participant(&app, &trainer, &cohort, "Fatima").await;
    let link = app
        .post("/v1/me/device-link-codes", Some(&phone.token), json!({}))
        .await
        .expect(201);
    let code = link["code"].as_str().unwrap();
    let tablet = app
        .post("/v1/auth/link-device", None, json!({ "link_code": code.to_lowercase(), "device_name": "iPad" }))
        .await
        .expect(201);
    let tablet = User::from_session(&tablet);
    assert_eq!(tablet.user_id, phone.user_id, "the tablet signs in as the same participant");
    assert_ne!(tablet.device_id, phone.device_id, "with credentials of its own");
    let cohorts = app.get("/v1/cohorts", &tablet.token).await.expect(200);
    assert_eq!(cohorts[0]["id"], cohort.as_str());
    app.post("/v1/auth/link-device", None, json!({ "link_code": code }))
        .await
        .expect_error(401, "invalid_link_code");
});

db_test!(async fn a_link_code_dies_with_the_device_that_made_it(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let phone = participant(&app, &trainer, &cohort, "Fatima").await;
    let link = |token: String| {
        let app = &app;
        async move {
            let created = app.post("/v1/me/device-link-codes", Some(&token), json!({})).await.expect(201);
            created["code"].as_str().unwrap().to_owned()
        }
    };
    let link_device = |code: String| {
        let app = &app;
        async move { app.post("/v1/auth/link-device", None, json!({ "link_code": code, "device_name": "x" })).await }
    };
    // A tablet makes a code, then the owner revokes the tablet from the phone.
    let tablet = User::from_session(&link_device(link(phone.token.clone()).await).await.expect(201));
    let from_tablet = link(tablet.token.clone()).await;
    let unused_from_tablet = link(tablet.token.clone()).await;
    app.delete(&format!("/v1/me/devices/{}", tablet.device_id), &phone.token).await.expect(204);
    link_device(from_tablet).await.expect_error(401, "invalid_link_code");
    link_device(unused_from_tablet).await.expect_error(401, "invalid_link_code");
    // A code made before logging out dies with the session too.
    let laptop = User::from_session(&link_device(link(phone.token.clone()).await).await.expect(201));
    let from_laptop = link(laptop.token.clone()).await;
    app.call(reqwest::Method::POST, "/v1/auth/logout", Some(&laptop.token), Some(json!({}))).await.expect(204);
    link_device(from_laptop).await.expect_error(401, "invalid_link_code");
    // The phone's own codes still work.
    link_device(link(phone.token.clone()).await).await.expect(201);
});

db_test!(async fn an_admin_creates_trainers_and_others_may_not(app) {
    let admin = demo_admin(&app).await;
    let body = json!({
        "role": "trainer",
        "email": "nieuw@veldwerk.test",
        "display_name": "Nieuwe trainer",
        "password": "long-enough-password",
    });
    let created = app.post("/v1/users", Some(&admin.token), body.clone()).await.expect(201);
    assert_eq!(created["role"], "trainer");
    app.login("nieuw@veldwerk.test", "long-enough-password").await;
    app.post("/v1/users", Some(&admin.token), body.clone())
        .await
        .expect_error(409, "email_taken");
    let mut short = body.clone();
    short["email"] = json!("kort@veldwerk.test");
    short["password"] = json!("short");
    app.post("/v1/users", Some(&admin.token), short)
        .await
        .expect_error(422, "password_too_short");
    let trainer = demo_trainer(&app).await;
    let mut other = body;
    other["email"] = json!("ander@veldwerk.test");
    app.post("/v1/users", Some(&trainer.token), other)
        .await
        .expect_error(403, "forbidden");
});

db_test!(async fn login_is_rate_limited_per_account_with_retry_after(app) with |config| {
    config.rate_limit.per_account = 3;
    config.rate_limit.window_secs = 600;
}; {
    for _ in 0..3 {
        app.post("/v1/auth/login", None, json!({ "email": demo::TRAINER_EMAIL, "password": "wrong-password" }))
            .await
            .expect_error(401, "invalid_credentials");
    }
    let reply = app
        .post("/v1/auth/login", None, json!({ "email": demo::TRAINER_EMAIL, "password": demo::TRAINER_PASSWORD }))
        .await;
    let retry_after: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0 && retry_after <= 600, "Retry-After {retry_after}");
    reply.expect_error(429, "rate_limited");
    // Another account from the same address is still served.
    app.login(demo::ADMIN_EMAIL, demo::ADMIN_PASSWORD).await;
});

db_test!(async fn login_and_enrolment_are_rate_limited_per_client_address(app) with |config| {
    config.rate_limit.per_address = 4;
}; {
    for attempt in 0..4 {
        app.post("/v1/auth/login", None, json!({ "email": format!("x{attempt}@veldwerk.test"), "password": "wrong-password" }))
            .await
            .expect_error(401, "invalid_credentials");
    }
    app.post("/v1/auth/enrol", None, json!({ "invite_code": "ABCDEFGH", "display_name": "X" }))
        .await
        .expect_error(429, "rate_limited");
});
