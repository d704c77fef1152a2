//! User profiles, created on first sign-in or first sight of a valid token.

use super::table::{Attr, Changes, Item, Key, Table};
use super::{StoreError, bound_to_key, refuse_tampered, user_pk};
use crate::model::UserId;

const PROFILE: &str = "PROFILE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub id: UserId,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub created_at: i64,
    pub last_login_at: i64,
}

/// What a sign-in tells keyward about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub id: UserId,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
}

pub struct Users<'a>(pub(super) &'a dyn Table);

impl Users<'_> {
    /// Creates or refreshes a profile; `created_at` is kept from the first time.
    pub async fn upsert(&self, update: &ProfileUpdate, now: i64) -> Result<UserProfile, StoreError> {
        let changes = Changes::default()
            .set("entity", Attr::S("user".into()))
            .set("user_id", Attr::S(update.id.to_string()))
            .set_opt("email", update.email.clone().map(Attr::S))
            .set("email_verified", Attr::Bool(update.email_verified))
            .set_opt("name", update.name.clone().map(Attr::S))
            .set_opt("picture", update.picture.clone().map(Attr::S))
            .set("last_login_at", Attr::N(now))
            .set_if_missing("created_at", Attr::N(now));
        let item = self.0.update(&Key::new(user_pk(&update.id), PROFILE), changes, None).await?;
        parse(&item, &update.id)
    }

    /// The user's profile; a tampered item is refused as absent.
    pub async fn get(&self, id: &UserId) -> Result<Option<UserProfile>, StoreError> {
        match self.0.get(&Key::new(user_pk(id), PROFILE)).await? {
            Some(item) => refuse_tampered(parse(&item, id)),
            None => Ok(None),
        }
    }
}

/// An item read as `id`'s profile (what its key names); its `user_id` must agree.
fn parse(item: &Item, id: &UserId) -> Result<UserProfile, StoreError> {
    bound_to_key(item, "user_id", id.as_str())?;
    Ok(UserProfile {
        id: id.clone(),
        email: item.opt_s("email")?.map(str::to_owned),
        email_verified: item.bool("email_verified")?,
        name: item.opt_s("name")?.map(str::to_owned),
        picture: item.opt_s("picture")?.map(str::to_owned),
        created_at: item.n("created_at")?,
        last_login_at: item.n("last_login_at")?,
    })
}
