//! Announcements from trainers to their cohort.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json, types::Example};
use uuid::Uuid;

use super::{ApiTags, auth::BearerAuth, error::ApiError};
use crate::service::{
    Services,
    announcements::{AnnouncementView as Announcement, NewAnnouncement},
};

/// A message to the cohort, or to chosen participants.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct PublishAnnouncementRequest {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: String,
    /// At most 5,000 characters.
    #[oai(validator(min_length = 1, max_length = 5000))]
    pub body: String,
    /// Participants of the cohort to reach; leave out for the whole cohort.
    #[oai(default, validator(max_items = 500))]
    pub recipient_ids: Vec<Uuid>,
    /// When to send it; leave out to send now. Cancel a scheduled one with DELETE.
    pub publish_at: Option<DateTime<Utc>>,
    /// Whether the push waits, on each device, until its quiet hours end (the default). Choose
    /// `false` for what cannot wait, such as a venue changed for tomorrow morning, sent at 22:00.
    /// The inbox gets it at once either way.
    #[oai(default = "yes")]
    pub respect_quiet_hours: bool,
}

fn yes() -> bool {
    true
}

super::stored_enum! {
    /// Where an announcement stands.
    AnnouncementStatusView, fallback Published {
        /// Waiting for its `publish_at`; can be cancelled.
        Scheduled = "scheduled",
        /// In the inboxes, pushed.
        Published = "published",
        /// Cancelled before it went out.
        Cancelled = "cancelled",
    }
}

/// Where a push message to one device stands.
#[derive(Debug, Object)]
pub struct DeliveryView {
    pub user_device_id: Uuid,
    /// `pending`, `sending`, `sent`, `failed`, `pruned` (the token is dead) or `unknown` (a
    /// worker stopped mid-send; not resent to avoid a duplicate).
    pub status: String,
    pub attempts: i32,
    #[oai(skip_serializing_if_is_none)]
    pub error_code: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<crate::store::entity::delivery::Model> for DeliveryView {
    fn from(delivery: crate::store::entity::delivery::Model) -> Self {
        Self {
            user_device_id: delivery.device_id,
            status: delivery.status,
            attempts: delivery.attempts,
            error_code: delivery.error_code,
            sent_at: delivery.sent_at,
        }
    }
}

/// Push deliveries of an announcement, counted by status.
#[derive(Debug, Object, Default)]
pub struct DeliveryCounts {
    pub pending: u32,
    pub sent: u32,
    /// Written to the server's log instead of sent: push is off (mode `log`).
    pub logged: u32,
    pub failed: u32,
    pub pruned: u32,
    pub unknown: u32,
}

/// An announcement with who it reaches and who has read it.
#[derive(Debug, Object)]
pub struct AnnouncementView {
    pub id: Uuid,
    pub cohort_id: Uuid,
    pub author_id: Uuid,
    pub title: String,
    pub body: String,
    pub status: AnnouncementStatusView,
    /// When it went (or goes) out.
    pub publish_at: DateTime<Utc>,
    /// Whether it goes to every participant of the cohort.
    pub to_whole_cohort: bool,
    /// Whether its push waits for each device's quiet hours.
    pub respect_quiet_hours: bool,
    /// The participants it reaches.
    pub recipient_ids: Vec<Uuid>,
    /// The participants whose app synced a read receipt.
    pub read_by: Vec<Uuid>,
    /// Push deliveries by status.
    pub delivery_counts: DeliveryCounts,
    /// Every push delivery, one per recipient device.
    pub deliveries: Vec<DeliveryView>,
}

impl From<Announcement> for AnnouncementView {
    fn from(view: Announcement) -> Self {
        let announcement = view.announcement;
        Self {
            id: announcement.id,
            cohort_id: announcement.cohort_id,
            author_id: announcement.author_id,
            title: announcement.title,
            body: announcement.body,
            status: AnnouncementStatusView::from_stored(&announcement.status),
            publish_at: announcement.publish_at,
            to_whole_cohort: announcement.to_whole_cohort,
            respect_quiet_hours: announcement.respect_quiet_hours,
            recipient_ids: view.recipients,
            read_by: view.read_by,
            delivery_counts: {
                let mut counts = DeliveryCounts::default();
                for delivery in &view.deliveries {
                    match delivery.status.as_str() {
                        "sent" => counts.sent += 1,
                        "logged" => counts.logged += 1,
                        "failed" => counts.failed += 1,
                        "pruned" => counts.pruned += 1,
                        "unknown" => counts.unknown += 1,
                        _ => counts.pending += 1,
                    }
                }
                counts
            },
            deliveries: view.deliveries.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(ApiResponse)]
pub enum AnnouncementPublished {
    /// Published (in the recipients' inbox at their next sync, and pushed to their devices), or
    /// scheduled.
    #[oai(status = 201)]
    Created(Json<AnnouncementView>),
}

type Result<T> = std::result::Result<T, ApiError>;

/// Announcements.
pub struct AnnouncementsApi {
    pub services: Services,
}

#[OpenApi]
impl AnnouncementsApi {
    /// Publish an announcement
    ///
    /// Goes to the whole cohort, or to the given participants, and lands in their synced inbox.
    /// Admins and the cohort's trainers.
    #[oai(
        path = "/cohorts/:id/announcements",
        method = "post",
        tag = "ApiTags::Announcements",
        operation_id = "publishAnnouncement"
    )]
    async fn publish(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<PublishAnnouncementRequest>,
    ) -> Result<AnnouncementPublished> {
        let body = body.0;
        let view = self
            .services
            .publish_announcement(
                &auth.0,
                id.0,
                NewAnnouncement {
                    title: body.title,
                    body: body.body,
                    recipient_ids: body.recipient_ids,
                    publish_at: body.publish_at,
                    respect_quiet_hours: body.respect_quiet_hours,
                },
            )
            .await?;
        Ok(AnnouncementPublished::Created(Json(view.into())))
    }

    /// Cancel a scheduled announcement
    ///
    /// Only before it goes out; cancelling twice succeeds.
    #[oai(
        path = "/cohorts/:id/announcements/:announcement_id",
        method = "delete",
        tag = "ApiTags::Announcements",
        operation_id = "cancelAnnouncement"
    )]
    async fn cancel(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        announcement_id: Path<Uuid>,
    ) -> Result<super::NoContent> {
        self.services
            .cancel_announcement(&auth.0, id.0, announcement_id.0)
            .await?;
        Ok(super::NoContent::Done)
    }

    /// List a cohort's announcements
    ///
    /// Newest first, with recipients, who has read each, and the push delivery to every device.
    /// Admins and the cohort's trainers.
    #[oai(
        path = "/cohorts/:id/announcements",
        method = "get",
        tag = "ApiTags::Announcements",
        operation_id = "listAnnouncements"
    )]
    async fn list(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<Vec<AnnouncementView>>> {
        let views = self.services.list_announcements(&auth.0, id.0).await?;
        Ok(Json(views.into_iter().map(Into::into).collect()))
    }
}

impl Example for PublishAnnouncementRequest {
    fn example() -> Self {
        Self {
            title: "Dag 3 begint om 10:00".into(),
            body: "We beginnen een half uur later, in het Wijkcentrum De Boog.".into(),
            recipient_ids: vec![],
            publish_at: "2027-03-14T07:00:00Z".parse().ok(),
            respect_quiet_hours: true,
        }
    }
}
