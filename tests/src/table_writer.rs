//! The threat model's table writer: someone who can read and write DynamoDB items but cannot use the
//! KMS key. Tests play them through the store's own table (on either backend), then call the routes.

use keyward::store::Store;
use keyward::store::table::{Attr, Item, Key};

pub struct TableWriter<'a>(pub &'a Store);

impl TableWriter<'_> {
    /// The item under `key`; the test's premise, so its absence fails the test.
    pub async fn read(&self, key: &Key) -> Item {
        self.0.table().get(key).await.expect("read the item").unwrap_or_else(|| panic!("no item {key:?}"))
    }

    /// Copies the item under `from` to `to`, every attribute but the key as it was, then applies
    /// `edits` (an attribute set, or removed when `None`).
    pub async fn copy(&self, from: &Key, to: &Key, edits: &[(&str, Option<Attr>)]) {
        let mut item = self.read(from).await;
        item.0.insert("pk".into(), Attr::S(to.pk.clone()));
        item.0.insert("sk".into(), Attr::S(to.sk.clone()));
        self.write(item, edits).await;
    }

    /// Changes attributes of the item under `key` in place.
    pub async fn edit(&self, key: &Key, edits: &[(&str, Option<Attr>)]) {
        let item = self.read(key).await;
        self.write(item, edits).await;
    }

    /// Writes a new item.
    pub async fn plant(&self, item: Item) {
        self.0.table().put(item, None).await.expect("plant the item");
    }

    async fn write(&self, mut item: Item, edits: &[(&str, Option<Attr>)]) {
        for (name, value) in edits {
            match value {
                Some(value) => item.0.insert((*name).to_owned(), value.clone()),
                None => item.0.remove(*name),
            };
        }
        self.plant(item).await;
    }
}
