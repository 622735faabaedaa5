//! Sessions of the trainer console. A console login is a password login like the API's, on a
//! device row of its own (the browser), plus a random cookie value whose hash is stored. Each
//! request turns the cookie into the same [`Actor`] a bearer token would give, after the same
//! live-device check, so logout, revocation and a remote wipe end the session at once and every
//! page goes through the same access rules as the API.

use chrono::{Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Actor, Error, Result, Role, Services,
    accounts::live_device_on,
    tokens::{hash_token, random_token},
};
use crate::store::{accounts as account_store, console as store, entity::console_session};

/// How long a console session lasts without logging in again.
pub const SESSION_HOURS: i64 = 12;

/// A logged-in console browser: the cookie's value and the CSRF token its forms carry.
#[derive(Debug)]
pub struct ConsoleSession {
    pub cookie: String,
    pub actor: Actor,
}

impl Services {
    /// Logs a trainer or admin into the console. Shares the API login's rate limits and checks;
    /// participants have no console.
    pub async fn console_login(
        &self,
        client: &str,
        email: &str,
        password: &str,
    ) -> Result<ConsoleSession> {
        let session = self
            .login(client, email, password, Some("Console (browser)"))
            .await?;
        let actor = self.authenticate(&session.access_token).await?;
        if actor.role == Role::Participant {
            self.logout(&actor).await?;
            return Err(Error::Forbidden(
                "the console is for trainers and admins".to_owned(),
            ));
        }
        let cookie = random_token()?;
        let now = Utc::now();
        store::insert_session(
            &self.db,
            console_session::Model {
                id: Uuid::now_v7(),
                device_id: actor.device_id,
                token_hash: hash_token(&cookie),
                created_at: now,
                expires_at: now + Duration::hours(SESSION_HOURS),
            },
        )
        .await?;
        Ok(ConsoleSession { cookie, actor })
    }

    /// The console user behind a cookie, if its session is still live.
    pub async fn console_actor(&self, cookie: &str) -> Result<Actor> {
        let expired = || {
            Error::unauthenticated(
                "console_session_expired",
                "the console session has ended; log in again",
            )
        };
        let session = store::find_live_session(&self.db, &hash_token(cookie), Utc::now())
            .await?
            .ok_or_else(expired)?;
        let device = live_device_on(&self.db, session.device_id).await?;
        let user = account_store::find_user(&self.db, device.user_id)
            .await?
            .filter(|user| user.erased_at.is_none())
            .ok_or_else(expired)?;
        let role = Role::parse(&user.role).ok_or_else(expired)?;
        Ok(Actor {
            user_id: user.id,
            device_id: device.id,
            role,
            provider_id: user.provider_id,
            organisation_id: user.organisation_id,
        })
    }

    /// Ends the console session: its device is revoked like any logged-out device.
    pub async fn console_logout(&self, actor: &Actor) -> Result<()> {
        store::delete_sessions_of_device(&self.db, actor.device_id).await?;
        self.logout(actor).await
    }
}

/// The CSRF token of a session: derived from the cookie's value, which a page of another site
/// can neither read (HttpOnly) nor guess, so a form that carries it came from our own page.
pub fn csrf_token(cookie: &str) -> String {
    let digest = Sha256::digest(format!("veldwerk-console-csrf\0{cookie}").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Compares a presented CSRF token with the session's in constant time.
pub fn csrf_matches(cookie: &str, presented: &str) -> bool {
    let expected = csrf_token(cookie);
    expected.len() == presented.len()
        && expected
            .bytes()
            .zip(presented.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
