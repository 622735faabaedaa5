//! Shared data for the scenarios: the demo provider, plus a second organisation and a second
//! provider so that isolation can be proven.

use chrono::{Duration, NaiveDate};
use serde_json::{Value, json};
use veldwerk_tests::TestApp;
use veldwerk_tests::veldwerk_server::service::{Role, accounts::NewStaff, demo};

/// A signed-in user: their access token, refresh token and ids.
#[derive(Debug, Clone)]
pub struct User {
    pub token: String,
    pub refresh_token: String,
    pub user_id: String,
    pub device_id: String,
}

impl User {
    pub fn from_session(session: &Value) -> Self {
        Self {
            token: session["access_token"].as_str().unwrap().to_owned(),
            refresh_token: session["refresh_token"].as_str().unwrap().to_owned(),
            user_id: session["user"]["id"].as_str().unwrap().to_owned(),
            device_id: session["device_id"].as_str().unwrap().to_owned(),
        }
    }
}

pub async fn demo_admin(app: &TestApp) -> User {
    User::from_session(&app.login(demo::ADMIN_EMAIL, demo::ADMIN_PASSWORD).await)
}

pub async fn demo_trainer(app: &TestApp) -> User {
    User::from_session(&app.login(demo::TRAINER_EMAIL, demo::TRAINER_PASSWORD).await)
}

/// The demo cohort's id, as the demo trainer sees it.
pub async fn demo_cohort(app: &TestApp, trainer: &User) -> String {
    let cohorts = app.get("/v1/cohorts", &trainer.token).await.expect(200);
    cohorts[0]["id"].as_str().unwrap().to_owned()
}

/// A fresh invite code for a cohort.
pub async fn invite_code(app: &TestApp, manager: &User, cohort_id: &str) -> String {
    let invites = app
        .post(
            &format!("/v1/cohorts/{cohort_id}/invites"),
            Some(&manager.token),
            json!({ "count": 1 }),
        )
        .await
        .expect(201);
    invites[0]["code"].as_str().unwrap().to_owned()
}

/// Enrols a new participant in a cohort.
pub async fn participant(app: &TestApp, manager: &User, cohort_id: &str, name: &str) -> User {
    let code = invite_code(app, manager, cohort_id).await;
    User::from_session(&app.enrol(&code, name).await)
}

/// Six weekly training days from `first`, 09:30 to 16:30.
pub fn six_days(first: NaiveDate) -> Value {
    Value::Array(
        (0..6)
            .map(|index| {
                json!({
                    "day_number": index + 1,
                    "date": (first + Duration::weeks(index)).to_string(),
                    "starts_at": "09:30:00",
                    "ends_at": "16:30:00",
                    "location": format!("Zaal {}", index + 1),
                })
            })
            .collect(),
    )
}

pub fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// The first programme of the caller's provider.
pub async fn programme_id(app: &TestApp, staff: &User) -> String {
    let programmes = app.get("/v1/programmes", &staff.token).await.expect(200);
    programmes[0]["id"].as_str().unwrap().to_owned()
}

/// Creates a trainer account (as admin) and logs it in.
pub async fn new_trainer(app: &TestApp, admin: &User, email: &str) -> User {
    app.post(
        "/v1/users",
        Some(&admin.token),
        json!({
            "role": "trainer",
            "email": email,
            "display_name": "Trainer",
            "password": "a-long-trainer-password",
        }),
    )
    .await
    .expect(201);
    User::from_session(&app.login(email, "a-long-trainer-password").await)
}

/// Creates an organisation with a cohort trained by `trainer`; returns (organisation, cohort).
pub async fn organisation_with_cohort(
    app: &TestApp,
    admin: &User,
    trainer: &User,
    name: &str,
) -> (String, String) {
    organisation_with_cohort_from(app, admin, trainer, name, date("2027-02-02")).await
}

/// The same, with six weekly days from `first`.
pub async fn organisation_with_cohort_from(
    app: &TestApp,
    admin: &User,
    trainer: &User,
    name: &str,
    first: NaiveDate,
) -> (String, String) {
    let organisation = app
        .post(
            "/v1/organisations",
            Some(&admin.token),
            json!({ "name": name }),
        )
        .await
        .expect(201);
    let organisation_id = organisation["id"].as_str().unwrap().to_owned();
    let cohort = app
        .post(
            "/v1/cohorts",
            Some(&admin.token),
            json!({
                "organisation_id": organisation_id,
                "programme_id": programme_id(app, admin).await,
                "name": format!("{name}, groep 1"),
                "days": six_days(first),
                "trainer_ids": [trainer.user_id],
            }),
        )
        .await
        .expect(201);
    (organisation_id, cohort["id"].as_str().unwrap().to_owned())
}

/// A second provider on the same installation, with its admin signed in.
pub async fn other_provider(app: &TestApp) -> User {
    app.services
        .bootstrap_provider(
            "Andere opleider",
            NewStaff {
                role: Role::Admin,
                email: "admin@andere.test".into(),
                display_name: "Andere beheerder".into(),
                password: "another-admin-password".into(),
            },
        )
        .await
        .expect("a second provider can be created");
    User::from_session(
        &app.login("admin@andere.test", "another-admin-password")
            .await,
    )
}

/// Where a check with real npm packages lives (`tests/<folder>`), when its packages are
/// installed (`npm ci --prefix tests/<folder>`, which `.ci/run` does): `package` is one of them.
/// Outside CI a missing installation skips the check, saying so; in CI it fails.
pub fn npm_check_dir(folder: &str, package: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(folder);
    if dir.join("node_modules").join(package).is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install {package}: `npm ci --prefix tests/{folder}`"
    );
    eprintln!("skipped: {package} is not installed (`npm ci --prefix tests/{folder}`)");
    None
}
