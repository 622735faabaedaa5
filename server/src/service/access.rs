//! Who is calling, and the authorisation rules, in one place.
//!
//! Scope rules: a participant sees their own organisation and the cohorts they are enrolled in;
//! a trainer works for the provider and sees the cohorts they train; an admin sees every
//! organisation and cohort of their provider. Anything outside the caller's scope answers
//! "not found", so ids of other organisations cannot be probed.

use uuid::Uuid;

use super::error::{Error, Result};
use crate::store::entity::{cohort_member, organisation};

/// The one role a user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The provider's staff: manages organisations, trainers and cohorts.
    Admin,
    /// Runs cohorts: schedules, invites, reminders.
    Trainer,
    /// A municipal professional following the trajectory.
    Participant,
}

impl Role {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Trainer => "trainer",
            Role::Participant => "participant",
        }
    }

    /// Parses the stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "admin" => Some(Role::Admin),
            "trainer" => Some(Role::Trainer),
            "participant" => Some(Role::Participant),
            _ => None,
        }
    }
}

/// An authenticated caller: a user on one of their devices.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Uuid,
    pub device_id: Uuid,
    pub role: Role,
    pub provider_id: Uuid,
    /// Set for participants: the municipality they work for.
    pub organisation_id: Option<Uuid>,
}

impl Actor {
    /// Fails unless the caller has one of the given roles.
    pub fn require(&self, roles: &[Role]) -> Result<()> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "a {} may not do this",
                self.role.as_str()
            )))
        }
    }

    /// Whether the caller may see this organisation.
    pub fn can_see_organisation(&self, organisation: &organisation::Model) -> bool {
        match self.role {
            Role::Admin | Role::Trainer => organisation.provider_id == self.provider_id,
            Role::Participant => self.organisation_id == Some(organisation.id),
        }
    }

    /// Whether the caller may see this cohort, given the caller's membership row (if any) and the
    /// cohort's organisation.
    pub fn can_see_cohort(
        &self,
        organisation: &organisation::Model,
        membership: Option<&cohort_member::Model>,
    ) -> bool {
        match self.role {
            Role::Admin => organisation.provider_id == self.provider_id,
            Role::Trainer | Role::Participant => {
                organisation.provider_id == self.provider_id && membership.is_some()
            }
        }
    }
}
