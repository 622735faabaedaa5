//! Announcements from trainers to their cohort.

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use uuid::Uuid;

use super::{ApiTags, auth::BearerAuth, error::ApiError};
use crate::service::{
    Services,
    announcements::{AnnouncementView as Announcement, NewAnnouncement},
};

/// A message to the cohort, or to chosen participants.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PublishAnnouncementRequest {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: String,
    /// At most 5,000 characters.
    #[oai(validator(min_length = 1, max_length = 5000))]
    pub body: String,
    /// Participants of the cohort to reach; leave out for the whole cohort.
    #[oai(default, validator(max_items = 500))]
    pub recipient_ids: Vec<Uuid>,
}

/// An announcement with who it reaches and who has read it.
#[derive(Debug, Object)]
pub struct AnnouncementView {
    pub id: Uuid,
    pub cohort_id: Uuid,
    pub author_id: Uuid,
    pub title: String,
    pub body: String,
    /// `published`.
    pub status: String,
    pub published_at: DateTime<Utc>,
    /// Whether it goes to every participant of the cohort.
    pub to_whole_cohort: bool,
    /// The participants it reaches.
    pub recipient_ids: Vec<Uuid>,
    /// The participants whose app synced a read receipt.
    pub read_by: Vec<Uuid>,
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
            status: announcement.status,
            published_at: announcement.publish_at,
            to_whole_cohort: announcement.to_whole_cohort,
            recipient_ids: view.recipients,
            read_by: view.read_by,
        }
    }
}

#[derive(ApiResponse)]
pub enum AnnouncementPublished {
    /// Published: it is in the recipients' inbox at their next sync.
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
        tag = "ApiTags::Announcements"
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
                },
            )
            .await?;
        Ok(AnnouncementPublished::Created(Json(view.into())))
    }

    /// List a cohort's announcements
    ///
    /// Newest first, with recipients and who has read each. Admins and the cohort's trainers.
    #[oai(
        path = "/cohorts/:id/announcements",
        method = "get",
        tag = "ApiTags::Announcements"
    )]
    async fn list(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<Vec<AnnouncementView>>> {
        let views = self.services.list_announcements(&auth.0, id.0).await?;
        Ok(Json(views.into_iter().map(Into::into).collect()))
    }
}
