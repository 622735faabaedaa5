//! Login, enrolment, device linking, token refresh, logout, the caller's account and devices,
//! and staff accounts.

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use super::{
    ApiTags, NoContent,
    auth::{BearerAuth, client_address},
    error::ApiError,
};
use crate::{
    service::{
        Role, Services,
        accounts::{NewStaff, Session},
    },
    store::entity::{device, user},
};

/// Email and password of an admin or trainer.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct LoginRequest {
    /// The account's email address (case does not matter).
    #[oai(validator(max_length = 254))]
    pub email: String,
    #[oai(validator(max_length = 1024))]
    pub password: String,
    /// A name for this session in the device list, e.g. "laptop".
    #[oai(validator(max_length = 80))]
    pub device_name: Option<String>,
}

/// An invite code from the trainer and the name to show in the cohort.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct EnrolRequest {
    /// The invite code as printed, e.g. `K7QM-3XPA`; case, spaces and dashes do not matter.
    #[oai(validator(min_length = 1, max_length = 32))]
    pub invite_code: String,
    /// The participant's name as fellow participants and trainers see it.
    #[oai(validator(min_length = 1, max_length = 80))]
    pub display_name: String,
    /// A name for this device, e.g. "Pixel 8".
    #[oai(validator(max_length = 80))]
    pub device_name: Option<String>,
}

/// A link code created on the user's first device.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct LinkDeviceRequest {
    #[oai(validator(min_length = 1, max_length = 32))]
    pub link_code: String,
    /// A name for this device, e.g. "iPad".
    #[oai(validator(max_length = 80))]
    pub device_name: Option<String>,
}

/// The current refresh token of this device.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct RefreshRequest {
    #[oai(validator(min_length = 1, max_length = 256))]
    pub refresh_token: String,
}

/// A user as others may see them.
#[derive(Debug, Object)]
pub struct UserView {
    pub id: Uuid,
    pub role: super::RoleView,
    pub display_name: String,
    /// Admins and trainers only.
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    /// The participant's municipality.
    #[oai(skip_serializing_if_is_none)]
    pub organisation_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for UserView {
    fn from(user: user::Model) -> Self {
        Self {
            id: user.id,
            role: super::RoleView::from_stored(&user.role),
            display_name: user.display_name,
            email: user.email,
            organisation_id: user.organisation_id,
            created_at: user.created_at,
        }
    }
}

/// Credentials for one device. Keep the refresh token in the device's secure storage; it is shown
/// once and each refresh replaces it.
#[derive(Debug, Object)]
pub struct SessionView {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single use: exchange it at `/v1/auth/refresh` for new tokens. Using one twice revokes the
    /// device.
    pub refresh_token: String,
    /// This device's id, as listed in `/v1/me/devices`.
    pub device_id: Uuid,
    pub user: UserView,
}

impl From<Session> for SessionView {
    fn from(session: Session) -> Self {
        Self {
            access_token: session.access_token,
            token_type: "Bearer".into(),
            expires_in: session.expires_in_secs,
            refresh_token: session.refresh_token,
            device_id: session.device_id,
            user: session.user.into(),
        }
    }
}

/// A device (session) of the caller.
#[derive(Debug, Object)]
pub struct DeviceView {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// When the device last refreshed its tokens.
    pub last_seen_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether this is the device making the request.
    pub current: bool,
}

impl DeviceView {
    /// A device as shown to a caller whose own device is `current`.
    pub fn of(device: device::Model, current: Uuid) -> Self {
        Self {
            current: device.id == current,
            id: device.id,
            name: device.name,
            created_at: device.created_at,
            last_seen_at: device.last_seen_at,
            revoked_at: device.revoked_at,
        }
    }
}

/// A single-use code to sign in another device of the same account.
#[derive(Debug, Object)]
pub struct LinkCodeView {
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// Roles that can be given to a staff account.
#[derive(Debug, Enum, Clone, Copy)]
#[oai(rename_all = "lowercase")]
pub enum StaffRole {
    Admin,
    Trainer,
}

/// A new admin or trainer account.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CreateStaffRequest {
    pub role: StaffRole,
    #[oai(validator(max_length = 254))]
    pub email: String,
    #[oai(validator(min_length = 1, max_length = 80))]
    pub display_name: String,
    /// At least 10 characters.
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

#[derive(ApiResponse)]
pub enum SessionCreated {
    /// Credentials for the new device.
    #[oai(status = 201)]
    Created(Json<SessionView>),
}

#[derive(ApiResponse)]
pub enum UserCreated {
    /// The new account.
    #[oai(status = 201)]
    Created(Json<UserView>),
}

#[derive(ApiResponse)]
pub enum LinkCodeCreated {
    /// Type this code on the other device within its lifetime.
    #[oai(status = 201)]
    Created(Json<LinkCodeView>),
}

type Result<T> = std::result::Result<T, ApiError>;

/// Accounts and sessions.
pub struct AccountsApi {
    pub services: Services,
}

#[OpenApi]
impl AccountsApi {
    /// Log in as admin or trainer
    ///
    /// Starts a session for a new device. Rate limited per client address and per account.
    #[oai(
        path = "/auth/login",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "login"
    )]
    async fn login(&self, req: &Request, body: Json<LoginRequest>) -> Result<SessionCreated> {
        let client = client_address(req, self.services.config().trust_forwarded_for);
        let session = self
            .services
            .login(
                &client,
                &body.email,
                &body.password,
                body.device_name.as_deref(),
            )
            .await?;
        Ok(SessionCreated::Created(Json(session.into())))
    }

    /// Enrol a participant's device with an invite code
    ///
    /// Redeems a single-use invite: creates the participant, adds them to the invite's cohort and
    /// starts a session on this device. Rate limited per client address and per code.
    #[oai(
        path = "/auth/enrol",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "enrol"
    )]
    async fn enrol(&self, req: &Request, body: Json<EnrolRequest>) -> Result<SessionCreated> {
        let client = client_address(req, self.services.config().trust_forwarded_for);
        let session = self
            .services
            .enrol(
                &client,
                &body.invite_code,
                &body.display_name,
                body.device_name.as_deref(),
            )
            .await?;
        Ok(SessionCreated::Created(Json(session.into())))
    }

    /// Sign in another device with a link code
    ///
    /// The code comes from `POST /v1/me/device-link-codes` on a device already signed in.
    #[oai(
        path = "/auth/link-device",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "linkDevice"
    )]
    async fn link_device(
        &self,
        req: &Request,
        body: Json<LinkDeviceRequest>,
    ) -> Result<SessionCreated> {
        let client = client_address(req, self.services.config().trust_forwarded_for);
        let session = self
            .services
            .link_device(&client, &body.link_code, body.device_name.as_deref())
            .await?;
        Ok(SessionCreated::Created(Json(session.into())))
    }

    /// Exchange a refresh token for new tokens
    ///
    /// Rotates: the presented refresh token becomes invalid and a new one is returned. Presenting
    /// an already used refresh token revokes the device's session (`refresh_token_reused`).
    #[oai(
        path = "/auth/refresh",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "refresh"
    )]
    async fn refresh(&self, body: Json<RefreshRequest>) -> Result<Json<SessionView>> {
        let session = self.services.refresh(&body.refresh_token).await?;
        Ok(Json(session.into()))
    }

    /// Log out this device
    ///
    /// Revokes the calling device's session: its access and refresh tokens stop working.
    #[oai(
        path = "/auth/logout",
        method = "post",
        tag = "ApiTags::Auth",
        operation_id = "logout"
    )]
    async fn logout(&self, auth: BearerAuth) -> Result<NoContent> {
        self.services.logout(&auth.0).await?;
        Ok(NoContent::Done)
    }

    /// The caller's account
    ///
    /// Who the access token belongs to: id, role, name, email and, for participants, their
    /// municipality.
    #[oai(
        path = "/me",
        method = "get",
        tag = "ApiTags::Me",
        operation_id = "getMe"
    )]
    async fn me(&self, auth: BearerAuth) -> Result<Json<UserView>> {
        Ok(Json(self.services.me(&auth.0).await?.into()))
    }

    /// Delete the caller's account
    ///
    /// Participants only (app stores require in-app account deletion). Erases the account and
    /// everything in it as `DELETE /v1/participants/{id}` does; every device of the account,
    /// this one included, answers 401 `device_wiped` from then on. Cannot be undone.
    #[oai(
        path = "/me",
        method = "delete",
        tag = "ApiTags::Me",
        operation_id = "deleteMe"
    )]
    async fn delete_me(&self, auth: BearerAuth) -> Result<NoContent> {
        self.services.delete_own_account(&auth.0).await?;
        Ok(NoContent::Done)
    }

    /// The caller's devices
    ///
    /// Every device (session) of the account, revoked ones included, newest first.
    #[oai(
        path = "/me/devices",
        method = "get",
        tag = "ApiTags::Me",
        operation_id = "listDevices"
    )]
    async fn devices(&self, auth: BearerAuth) -> Result<Json<Vec<DeviceView>>> {
        let current = auth.0.device_id;
        let devices = self.services.list_devices(&auth.0).await?;
        Ok(Json(
            devices
                .into_iter()
                .map(|device| DeviceView::of(device, current))
                .collect(),
        ))
    }

    /// Revoke one of the caller's devices
    ///
    /// Signs the device out: its tokens stop working and it gets no more push messages.
    /// Revoking an already revoked device succeeds. With `wipe=true` (a lost or stolen phone) the
    /// device is also told to delete everything it holds: from then on every request it makes
    /// (pull, push, events, refresh, anything) answers 401 with code `device_wiped`, and an open
    /// event stream ends with a `device_wiped` event. A device revoked earlier can still be
    /// marked for wiping.
    #[oai(
        path = "/me/devices/:device_id",
        method = "delete",
        tag = "ApiTags::Me",
        operation_id = "revokeDevice"
    )]
    async fn revoke_device(
        &self,
        auth: BearerAuth,
        device_id: Path<Uuid>,
        /// Also tell the device to delete its local copy and outbox.
        wipe: Query<Option<bool>>,
    ) -> Result<NoContent> {
        self.services
            .revoke_device(&auth.0, device_id.0, wipe.0.unwrap_or(false))
            .await?;
        Ok(NoContent::Done)
    }

    /// Create a code to sign in another device
    ///
    /// Single use, valid for 15 minutes. Redeem it with `POST /v1/auth/link-device`.
    #[oai(
        path = "/me/device-link-codes",
        method = "post",
        tag = "ApiTags::Me",
        operation_id = "createLinkCode"
    )]
    async fn create_link_code(&self, auth: BearerAuth) -> Result<LinkCodeCreated> {
        let code = self.services.create_link_code(&auth.0).await?;
        Ok(LinkCodeCreated::Created(Json(LinkCodeView {
            code: code.code,
            expires_at: code.expires_at,
        })))
    }

    /// List the admins and trainers
    ///
    /// Admins only: their provider's staff, by name.
    #[oai(
        path = "/users",
        method = "get",
        tag = "ApiTags::Users",
        operation_id = "listUsers"
    )]
    async fn list_users(&self, auth: BearerAuth) -> Result<Json<Vec<UserView>>> {
        let staff = self.services.list_staff(&auth.0).await?;
        Ok(Json(staff.into_iter().map(Into::into).collect()))
    }

    /// Create an admin or trainer account
    ///
    /// Admins only; the account belongs to the admin's provider.
    #[oai(
        path = "/users",
        method = "post",
        tag = "ApiTags::Users",
        operation_id = "createUser"
    )]
    async fn create_user(
        &self,
        auth: BearerAuth,
        body: Json<CreateStaffRequest>,
    ) -> Result<UserCreated> {
        let body = body.0;
        let user = self
            .services
            .create_staff(
                &auth.0,
                NewStaff {
                    role: match body.role {
                        StaffRole::Admin => Role::Admin,
                        StaffRole::Trainer => Role::Trainer,
                    },
                    email: body.email,
                    display_name: body.display_name,
                    password: body.password,
                },
            )
            .await?;
        Ok(UserCreated::Created(Json(user.into())))
    }
}

impl Example for LoginRequest {
    fn example() -> Self {
        Self {
            // Not the demo login: the spec is served in production too.
            email: "s.devries@gemeente.example".into(),
            password: "een-lang-en-geheim-wachtwoord".into(),
            device_name: Some("laptop".into()),
        }
    }
}

impl Example for EnrolRequest {
    fn example() -> Self {
        Self {
            invite_code: "K7QM-3XPA".into(),
            display_name: "Sanne de Vries".into(),
            device_name: Some("Pixel 8".into()),
        }
    }
}
