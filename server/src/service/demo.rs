//! Demo data for development: the Urban Professional programme, one municipality, one cohort
//! starting next week, an admin, a trainer and invite codes. Never in production mode.

use chrono::{Datelike, Duration, NaiveTime, Utc, Weekday};
use uuid::Uuid;

use super::{
    Actor, Result, Role, Services,
    accounts::NewStaff,
    cohorts::{DayPlan, NewCohort},
    schedule::DEFAULT_TIME_ZONE,
};
use crate::{
    config::Mode,
    store::{accounts, catalog, cohorts},
};

/// The demo admin login.
pub const ADMIN_EMAIL: &str = "admin@veldwerk.test";
/// The demo admin password; demo data exists only in development mode.
pub const ADMIN_PASSWORD: &str = "demo-admin-wachtwoord";
/// The demo trainer login.
pub const TRAINER_EMAIL: &str = "trainer@veldwerk.test";
/// The demo trainer password.
pub const TRAINER_PASSWORD: &str = "demo-trainer-wachtwoord";
const PROVIDER_NAME: &str = "Demo-opleider";
/// Unused invite codes kept available for trying out enrolment.
const OPEN_INVITES: usize = 5;

/// What the console shows so that someone can try the demo.
#[derive(Debug)]
pub struct DemoLogins {
    pub admin_email: &'static str,
    pub admin_password: &'static str,
    pub trainer_email: &'static str,
    pub trainer_password: &'static str,
    pub cohort_name: String,
    pub invite_codes: Vec<String>,
}

impl Services {
    /// Creates the demo on an empty database and tops up its open invite codes. Does nothing in
    /// production mode or with demo data switched off.
    pub async fn ensure_demo(&self) -> Result<Option<DemoLogins>> {
        if self.config.mode != Mode::Development || !self.config.demo_data {
            return Ok(None);
        }
        if catalog::count_providers(&self.db).await? == 0 {
            self.create_demo().await?;
        }
        let Some(trainer) = accounts::find_user_by_email(&self.db, TRAINER_EMAIL).await? else {
            // The database holds real data that is not the demo: leave it alone.
            return Ok(None);
        };
        let trainer_actor = Actor {
            user_id: trainer.id,
            device_id: Uuid::nil(),
            role: Role::Trainer,
            provider_id: trainer.provider_id,
            organisation_id: None,
        };
        let Some(cohort) = cohorts::list_cohorts_of_member(&self.db, trainer.id)
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let now = Utc::now();
        let mut invite_codes: Vec<String> = cohorts::list_invites(&self.db, cohort.id)
            .await?
            .into_iter()
            .filter(|i| i.redeemed_at.is_none() && i.revoked_at.is_none() && i.expires_at > now)
            .map(|invite| invite.code)
            .take(OPEN_INVITES)
            .collect();
        if invite_codes.len() < OPEN_INVITES {
            let missing = u32::try_from(OPEN_INVITES - invite_codes.len()).unwrap_or(1);
            let fresh = self
                .create_invites(&trainer_actor, cohort.id, missing, Some("demo".into()))
                .await?;
            invite_codes.extend(fresh.into_iter().map(|invite| invite.code));
        }
        Ok(Some(DemoLogins {
            admin_email: ADMIN_EMAIL,
            admin_password: ADMIN_PASSWORD,
            trainer_email: TRAINER_EMAIL,
            trainer_password: TRAINER_PASSWORD,
            cohort_name: cohort.name,
            invite_codes,
        }))
    }

    async fn create_demo(&self) -> Result<()> {
        let (provider, admin) = self
            .bootstrap_provider(
                PROVIDER_NAME,
                NewStaff {
                    role: Role::Admin,
                    email: ADMIN_EMAIL.into(),
                    display_name: "Demo beheerder".into(),
                    password: ADMIN_PASSWORD.into(),
                },
            )
            .await?;
        let programme = catalog::list_programmes(&self.db, provider.id)
            .await?
            .into_iter()
            .next()
            .ok_or(super::Error::NotFound("programme"))?;
        let programme = catalog::find_programme(&self.db, programme.id)
            .await?
            .ok_or(super::Error::NotFound("programme"))?;
        let trainer = self
            .insert_staff(
                provider.id,
                NewStaff {
                    role: Role::Trainer,
                    email: TRAINER_EMAIL.into(),
                    display_name: "Demo trainer".into(),
                    password: TRAINER_PASSWORD.into(),
                },
            )
            .await?;
        let admin_actor = Actor {
            user_id: admin.id,
            device_id: Uuid::nil(),
            role: Role::Admin,
            provider_id: provider.id,
            organisation_id: None,
        };
        let organisation = self
            .create_organisation(&admin_actor, "Gemeente Voorbeeldstad")
            .await?;

        // Day 1 on Tuesday of next week, then every three weeks: weeks of normal work between.
        let today = Utc::now()
            .with_timezone(&chrono_tz::Europe::Amsterdam)
            .date_naive();
        let days_to_next_monday = 7 - i64::from(today.weekday().num_days_from_monday());
        let first_day = today
            + Duration::days(days_to_next_monday)
            + Duration::days(i64::from(Weekday::Tue.num_days_from_monday()));
        let places = [
            "Stadskantoor, zaal 3.14",
            "Wijkcentrum De Boog",
            "Stadskantoor, zaal 3.14",
            "Buurthuis Het Anker",
            "Bibliotheek, Grote Zaal",
            "Stadskantoor, raadszaal",
        ];
        let days = (0..programme.days.len())
            .map(|index| DayPlan {
                day_number: programme.days[index].day_number,
                date: first_day + Duration::weeks(3 * index as i64),
                starts_at: NaiveTime::from_hms_opt(9, 30, 0).unwrap_or_default(),
                ends_at: NaiveTime::from_hms_opt(16, 30, 0).unwrap_or_default(),
                location: places[index % places.len()].to_owned(),
            })
            .collect();
        self.create_cohort(
            &admin_actor,
            NewCohort {
                organisation_id: organisation.id,
                programme_id: programme.programme.id,
                name: "Urban Professional Voorbeeldstad, groep 1".into(),
                time_zone: Some(DEFAULT_TIME_ZONE.into()),
                days,
                trainer_ids: vec![trainer.id],
            },
        )
        .await?;
        tracing::info!("created the demo data");
        Ok(())
    }
}
