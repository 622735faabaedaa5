//! Accounts and sessions: password login, invite enrolment, linking a second device, refresh
//! rotation with reuse detection, logout and device management.
//!
//! Every session is a device row. A device holds one live refresh token at a time; each refresh
//! marks the presented token used and issues its successor. Presenting a used token again means
//! two parties hold the device's tokens, so the device is revoked (theft detection).

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use super::{
    Actor, Error, Result, Role, Services,
    audit::{self, AuditAction, AuditEvent},
    password,
    tokens::{self, hash_token, normalise_code, random_code},
};
use crate::store::{
    accounts as store, catalog, cohorts,
    entity::{cohort_member, device, device_link_code, refresh_token, user},
    push as push_store,
};

/// Lifetime of a code that links a second device to an account.
const LINK_CODE_TTL_MINUTES: i64 = 15;
/// Length of a device-link code.
const LINK_CODE_LEN: usize = 8;
/// Shortest password accepted for admin and trainer accounts.
pub const MIN_PASSWORD_LEN: usize = 10;

/// What a client holds after logging in, enrolling, linking or refreshing.
#[derive(Debug)]
pub struct Session {
    pub access_token: String,
    pub expires_in_secs: u64,
    pub refresh_token: String,
    pub device_id: Uuid,
    pub user: user::Model,
}

/// A new admin or trainer account.
#[derive(Debug)]
pub struct NewStaff {
    pub role: Role,
    pub email: String,
    pub display_name: String,
    pub password: String,
}

impl Services {
    /// Turns a bearer token into the calling actor; the device must still be active, so logout and
    /// revocation take effect at once rather than when the access token expires.
    pub async fn authenticate(&self, bearer: &str) -> Result<Actor> {
        let actor = self.tokens.verify(bearer).ok_or_else(|| {
            Error::unauthenticated(
                "invalid_token",
                "the access token is invalid or has expired; refresh it",
            )
        })?;
        self.live_device(actor.device_id).await?;
        Ok(actor)
    }

    /// The device, if its session still works. Otherwise why not, in one read: `device_wiped`
    /// when it was reported lost (the app deletes its local data), else `session_revoked`.
    async fn live_device(&self, device_id: Uuid) -> Result<device::Model> {
        live_device_on(&self.db, device_id).await
    }

    /// Logs an admin or trainer in with email and password, as a new device.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        client: &str,
        email: &str,
        password: &str,
        device_name: Option<&str>,
    ) -> Result<Session> {
        let email = normalise_email(email);
        self.limit_attempts(client, &format!("login:{email}"))?;
        let user = store::find_user_by_email(&self.db, &email).await?;
        let verified = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
            Some(stored) => password::verify(stored, password),
            None => {
                password::verify_nothing(password);
                false
            }
        };
        let Some(user) = user.filter(|_| verified) else {
            return Err(Error::unauthenticated(
                "invalid_credentials",
                "the email or password is wrong",
            ));
        };
        let txn = crate::store::begin_write(&self.db).await?;
        let session = self
            .start_session(&txn, user, device_name.unwrap_or("web"))
            .await?;
        txn.commit().await?;
        Ok(session)
    }

    /// Exchanges a refresh token for a new access token and a new refresh token.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, presented: &str) -> Result<Session> {
        let invalid = || {
            Error::unauthenticated(
                "invalid_refresh_token",
                "the refresh token is unknown or expired; log in or enrol again",
            )
        };
        let now = Utc::now();
        let token = store::find_refresh_token(&self.db, &hash_token(presented))
            .await?
            .ok_or_else(invalid)?;
        if let Some(used_at) = token.used_at {
            return self.replay_refresh(&token, presented, used_at, now).await;
        }
        if token.expires_at <= now {
            return Err(invalid());
        }
        let device = self.live_device(token.device_id).await?;
        let user = store::find_user(&self.db, device.user_id)
            .await?
            .ok_or_else(invalid)?;

        let txn = crate::store::begin_write(&self.db).await?;
        if !store::claim_refresh_token(&txn, token.id, now).await? {
            // A concurrent refresh with the same token won the race: the same app asking twice
            // gets the same successor; anything else is reuse.
            txn.rollback().await?;
            return self.replay_refresh(&token, presented, now, now).await;
        }
        let refresh_token = self
            .issue_refresh_token(&txn, device.id, Some(presented), now)
            .await?;
        store::touch_device(&txn, device.id, now).await?;
        txn.commit().await?;
        self.session(user, device.id, refresh_token)
    }

    /// A refresh token presented again. Within the grace interval after its use, and while its
    /// successor has never been used, the answer to the first refresh was probably lost (a
    /// phone on a train): the same successor is given again. Otherwise someone else holds a
    /// copy, and the device's session is revoked.
    async fn replay_refresh(
        &self,
        token: &refresh_token::Model,
        presented: &str,
        used_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let grace = Duration::seconds(
            i64::try_from(self.config.refresh_reuse_grace_secs).unwrap_or(i64::MAX),
        );
        if now - used_at <= grace {
            let successor = tokens::successor_token(self.config.jwt_secret.expose(), presented);
            let stored = store::find_refresh_token(&self.db, &hash_token(&successor)).await?;
            let unused = stored.is_some_and(|stored| {
                stored.used_at.is_none()
                    && stored.expires_at > now
                    && stored.device_id == token.device_id
            });
            if unused
                && let Some(device) = store::find_active_device(&self.db, token.device_id).await?
                && let Some(user) = store::find_user(&self.db, device.user_id).await?
            {
                tracing::info!(device.id = %device.id, "refresh repeated within the grace interval");
                return self.session(user, device.id, successor);
            }
        }
        Err(self.revoke_for_reuse(token, now).await)
    }

    async fn revoke_for_reuse(&self, token: &refresh_token::Model, now: DateTime<Utc>) -> Error {
        let revoked = async {
            let device = store::find_device(&self.db, token.device_id).await?;
            if let Some(device) = device {
                self.end_session(device.user_id, device.id, now, false)
                    .await?;
                if let Some(user) = store::find_user(&self.db, device.user_id).await? {
                    audit::record(
                        &self.db,
                        user.provider_id,
                        None,
                        AuditEvent::new(AuditAction::RefreshTokenReused)
                            .subject(user.id)
                            .details(serde_json::json!({ "device_id": device.id })),
                    )
                    .await?;
                }
            }
            Ok::<_, Error>(())
        }
        .await;
        match revoked {
            Ok(()) => {
                tracing::warn!(device.id = %token.device_id, "refresh token reused: device revoked");
                Error::unauthenticated(
                    "refresh_token_reused",
                    "this refresh token was already used; the device's session is revoked for safety, log in or enrol again",
                )
            }
            Err(err) => err,
        }
    }

    /// Redeems an invite: creates the participant, enrols them in the cohort, and starts a session
    /// on this device.
    #[tracing::instrument(skip_all)]
    pub async fn enrol(
        &self,
        client: &str,
        code: &str,
        display_name: &str,
        device_name: Option<&str>,
    ) -> Result<Session> {
        let code = normalise_code(code);
        self.limit_attempts(client, &format!("invite:{code}"))?;
        let display_name = required_text("display_name", display_name)?;
        let now = Utc::now();
        let invite = cohorts::find_invite_by_code(&self.db, &code)
            .await?
            .ok_or_else(|| Error::NotFound("invite code"))?;
        if invite.revoked_at.is_some() {
            return Err(Error::Gone {
                code: "invite_revoked",
                message: "this invite code was revoked; ask your trainer for a new one".into(),
            });
        }
        if invite.redeemed_at.is_some() {
            return Err(Error::conflict(
                "invite_already_used",
                "this invite code was already used; to add another device, create a link code on your first device",
            ));
        }
        if invite.expires_at <= now {
            return Err(Error::Gone {
                code: "invite_expired",
                message: "this invite code has expired; ask your trainer for a new one".into(),
            });
        }
        let cohort = cohorts::find_cohort(&self.db, invite.cohort_id)
            .await?
            .ok_or(Error::NotFound("cohort"))?;
        let organisation = catalog::find_organisation(&self.db, cohort.organisation_id)
            .await?
            .ok_or(Error::NotFound("organisation"))?;

        let participant = user::Model {
            id: Uuid::now_v7(),
            provider_id: organisation.provider_id,
            organisation_id: Some(organisation.id),
            role: Role::Participant.as_str().to_owned(),
            email: None,
            password_hash: None,
            display_name,
            created_at: now,
            erased_at: None,
        };
        let txn = crate::store::begin_write(&self.db).await?;
        store::insert_user(&txn, participant.clone()).await?;
        if !cohorts::claim_invite(&txn, invite.id, participant.id, now).await? {
            txn.rollback().await?;
            return Err(Error::conflict(
                "invite_already_used",
                "this invite code was just used by someone else",
            ));
        }
        cohorts::insert_member(
            &txn,
            cohort_member::Model {
                cohort_id: cohort.id,
                user_id: participant.id,
                role: Role::Participant.as_str().to_owned(),
                created_at: now,
            },
        )
        .await?;
        let participant_id = participant.id;
        let session = self
            .start_session(&txn, participant, device_name.unwrap_or("phone"))
            .await?;
        txn.commit().await?;
        self.plan_participant_reminders(cohort.id, participant_id)
            .await?;
        Ok(session)
    }

    /// Creates a short-lived, single-use code with which the caller signs in a second device.
    pub async fn create_link_code(&self, actor: &Actor) -> Result<device_link_code::Model> {
        let now = Utc::now();
        let code = device_link_code::Model {
            id: Uuid::now_v7(),
            user_id: actor.user_id,
            code: random_code(LINK_CODE_LEN)?,
            created_at: now,
            expires_at: now + Duration::minutes(LINK_CODE_TTL_MINUTES),
            used_at: None,
            device_id: Some(actor.device_id),
        };
        store::insert_link_code(&self.db, code.clone()).await?;
        Ok(code)
    }

    /// Signs a new device in to the account that created the link code.
    #[tracing::instrument(skip_all)]
    pub async fn link_device(
        &self,
        client: &str,
        code: &str,
        device_name: Option<&str>,
    ) -> Result<Session> {
        let code = normalise_code(code);
        self.limit_attempts(client, &format!("link:{code}"))?;
        let now = Utc::now();
        let unusable = || {
            Error::unauthenticated(
                "invalid_link_code",
                "the link code is unknown, used or expired; create a new one on your other device",
            )
        };
        let link = store::find_link_code(&self.db, &code)
            .await?
            .filter(|link| link.used_at.is_none() && link.expires_at > now)
            .ok_or_else(unusable)?;
        let user = store::find_user(&self.db, link.user_id)
            .await?
            .ok_or_else(unusable)?;
        // A code dies with the session of the device that made it (revoked or logged out).
        if let Some(device_id) = link.device_id {
            let maker = store::find_device(&self.db, device_id).await?;
            if maker.is_none_or(|device| device.revoked_at.is_some()) {
                return Err(unusable());
            }
        }
        let txn = crate::store::begin_write(&self.db).await?;
        if !store::claim_link_code(&txn, link.id, now).await? {
            txn.rollback().await?;
            return Err(unusable());
        }
        let session = self
            .start_session(&txn, user, device_name.unwrap_or("device"))
            .await?;
        txn.commit().await?;
        Ok(session)
    }

    /// Ends the caller's session on this device.
    pub async fn logout(&self, actor: &Actor) -> Result<()> {
        self.end_session(actor.user_id, actor.device_id, Utc::now(), false)
            .await?;
        Ok(())
    }

    /// Revokes a device's session: its tokens stop working, it gets no more push messages, and
    /// its live streams close (told to wipe when `wiped`). False when it was not a live device
    /// of this user.
    async fn end_session(
        &self,
        user_id: Uuid,
        device_id: Uuid,
        now: DateTime<Utc>,
        wiped: bool,
    ) -> Result<bool> {
        if !store::revoke_device(&self.db, user_id, device_id, now).await? {
            return Ok(false);
        }
        push_store::delete_push_device(&self.db, device_id).await?;
        store::expire_link_codes_of_device(&self.db, device_id, now).await?;
        // One notice for both, so a stream never reads "revoked" before "wipe".
        self.publish_notice(super::sync::ChangeNotice {
            ended_devices: vec![device_id],
            wiped_devices: if wiped { vec![device_id] } else { Vec::new() },
            ..Default::default()
        });
        Ok(true)
    }

    /// The caller's own account.
    pub async fn me(&self, actor: &Actor) -> Result<user::Model> {
        store::find_user(&self.db, actor.user_id)
            .await?
            .ok_or(Error::NotFound("user"))
    }

    /// The caller's devices, revoked ones included.
    pub async fn list_devices(&self, actor: &Actor) -> Result<Vec<device::Model>> {
        Ok(store::list_devices(&self.db, actor.user_id).await?)
    }

    /// Revokes one of the caller's own devices.
    ///
    /// With `wipe` (a lost phone), the device is also told to delete what it holds: its next
    /// request to any endpoint answers 401 `device_wiped`, and its live streams end with a
    /// `device_wiped` event. A device revoked before can still be marked for wiping.
    pub async fn revoke_device(&self, actor: &Actor, device_id: Uuid, wipe: bool) -> Result<()> {
        self.revoke_device_of(actor, actor.user_id, device_id, wipe)
            .await
    }

    /// Revokes a device of `user_id` (the caller's own, or a participant's for an admin: the
    /// caller decides who may), logged in the audit log as done by `actor`.
    pub(crate) async fn revoke_device_of(
        &self,
        actor: &Actor,
        user_id: Uuid,
        device_id: Uuid,
        wipe: bool,
    ) -> Result<()> {
        let now = Utc::now();
        let wiped = wipe && store::request_wipe(&self.db, user_id, device_id, now).await?;
        if wiped {
            tracing::info!(device.id = %device_id, "device reported lost: wipe requested");
        }
        let ended = self.end_session(user_id, device_id, now, wiped).await?;
        if ended || wiped {
            audit::record(
                &self.db,
                actor.provider_id,
                Some(actor),
                AuditEvent::new(AuditAction::DeviceRevoked)
                    .subject(user_id)
                    .details(serde_json::json!({ "device_id": device_id, "wipe": wiped })),
            )
            .await?;
            return Ok(());
        }
        // Already revoked is fine (idempotent); another user's device is not found.
        let own = store::list_devices(&self.db, user_id)
            .await?
            .iter()
            .any(|device| device.id == device_id);
        if own {
            Ok(())
        } else {
            Err(Error::NotFound("device"))
        }
    }

    /// Creates an admin or trainer account in the caller's provider (admins only).
    pub async fn create_staff(&self, actor: &Actor, new: NewStaff) -> Result<user::Model> {
        actor.require(&[Role::Admin])?;
        if new.role == Role::Participant {
            return Err(Error::invalid(
                "invalid_role",
                "participants enrol with an invite code; create an invite instead",
            ));
        }
        let user = self.insert_staff(actor.provider_id, new).await?;
        audit::record(
            &self.db,
            actor.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::StaffCreated)
                .subject(user.id)
                .details(serde_json::json!({ "role": user.role })),
        )
        .await?;
        Ok(user)
    }

    /// The provider's admins and trainers (admins only).
    pub async fn list_staff(&self, actor: &Actor) -> Result<Vec<user::Model>> {
        actor.require(&[Role::Admin])?;
        Ok(store::staff_of(&self.db, actor.provider_id).await?)
    }

    /// Inserts an admin or trainer; also used by the demo seed and the bootstrap command.
    pub async fn insert_staff(&self, provider_id: Uuid, new: NewStaff) -> Result<user::Model> {
        let email = normalise_email(&new.email);
        if !email.contains('@') || email.starts_with('@') || email.ends_with('@') {
            return Err(Error::invalid(
                "invalid_email",
                "the email address is not valid",
            ));
        }
        if new.password.chars().count() < MIN_PASSWORD_LEN {
            return Err(Error::invalid(
                "password_too_short",
                format!("a password needs at least {MIN_PASSWORD_LEN} characters"),
            ));
        }
        if store::find_user_by_email(&self.db, &email).await?.is_some() {
            return Err(Error::conflict(
                "email_taken",
                "an account with this email address already exists",
            ));
        }
        let user = user::Model {
            id: Uuid::now_v7(),
            provider_id,
            organisation_id: None,
            role: new.role.as_str().to_owned(),
            email: Some(email),
            password_hash: Some(password::hash(&new.password)?),
            display_name: required_text("display_name", &new.display_name)?,
            created_at: Utc::now(),
            erased_at: None,
        };
        store::insert_user(&self.db, user.clone()).await?;
        Ok(user)
    }

    fn limit_attempts(&self, client: &str, account: &str) -> Result<()> {
        let now = Instant::now();
        self.address_limiter
            .check(client, now)
            .and_then(|()| self.account_limiter.check(account, now))
            .map_err(|retry_after| Error::RateLimited { retry_after })
    }

    async fn start_session(
        &self,
        txn: &DatabaseTransaction,
        user: user::Model,
        device_name: &str,
    ) -> Result<Session> {
        let now = Utc::now();
        let device = device::Model {
            id: Uuid::now_v7(),
            user_id: user.id,
            name: device_name.trim().chars().take(80).collect(),
            created_at: now,
            last_seen_at: now,
            revoked_at: None,
            wipe_requested_at: None,
            last_sync_at: None,
            outbox_pending: None,
            outbox_oldest_at: None,
            app_version: None,
        };
        store::insert_device(txn, device.clone()).await?;
        let refresh_token = self.issue_refresh_token(txn, device.id, None, now).await?;
        self.session(user, device.id, refresh_token)
    }

    async fn issue_refresh_token(
        &self,
        txn: &DatabaseTransaction,
        device_id: Uuid,
        predecessor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String> {
        // A rotation's successor is derived from its predecessor, so that it can be given again
        // (`replay_refresh`); a new session's first token is random.
        let token = match predecessor {
            Some(predecessor) => {
                tokens::successor_token(self.config.jwt_secret.expose(), predecessor)
            }
            None => tokens::random_token()?,
        };
        let ttl_days = i64::try_from(self.config.refresh_token_ttl_days).unwrap_or(i64::MAX);
        store::insert_refresh_token(
            txn,
            refresh_token::Model {
                id: Uuid::now_v7(),
                device_id,
                token_hash: hash_token(&token),
                created_at: now,
                expires_at: now + Duration::days(ttl_days),
                used_at: None,
            },
        )
        .await?;
        Ok(token)
    }

    fn session(
        &self,
        user: user::Model,
        device_id: Uuid,
        refresh_token: String,
    ) -> Result<Session> {
        let role = Role::parse(&user.role)
            .ok_or_else(|| anyhow::anyhow!("user {} has an unknown role {}", user.id, user.role))?;
        let actor = Actor {
            user_id: user.id,
            device_id,
            role,
            provider_id: user.provider_id,
            organisation_id: user.organisation_id,
        };
        Ok(Session {
            access_token: self.tokens.issue(&actor)?,
            expires_in_secs: self.tokens.ttl().as_secs(),
            refresh_token,
            device_id,
            user,
        })
    }
}

fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Trims a required text field and rejects it when empty.
pub fn required_text(field: &'static str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::Invalid {
            code: "required",
            message: format!("{field} must not be empty"),
            details: Some(serde_json::json!({ "field": field })),
        });
    }
    Ok(value.to_owned())
}

/// [`Services::live_device`] on a given connection: inside a write transaction it sees a
/// revocation or erasure that committed before the transaction's turn, so a push that was
/// authenticated just before an erasure cannot write after it.
pub(crate) async fn live_device_on(
    db: &impl sea_orm::ConnectionTrait,
    device_id: Uuid,
) -> Result<device::Model> {
    match store::find_device(db, device_id).await? {
        Some(device) if device.revoked_at.is_none() => Ok(device),
        Some(device) if device.wipe_requested_at.is_some() => Err(Error::unauthenticated(
            "device_wiped",
            "this device was reported lost: delete its local data and outbox, then sign in again",
        )),
        _ => Err(Error::unauthenticated(
            "session_revoked",
            "this device's session was revoked",
        )),
    }
}
