//! One contract, three backends: every test here runs against the embedded SQLite store, against
//! DynamoDB (moto's server through the real SDK) and against the in-memory table the capacity
//! model runs on, and all must behave identically.

use std::sync::Arc;

use keyward::crypto::{BranchVersion, Purpose, Sealed, Tag, WrappedBranchKey, Wrapping};
use keyward::model::{ClientKind, OAuthProvider, Provider, UserId, ZaiRegion};
use keyward::store::table::{Attr, EXPIRES_AT, Item, Key, Table};
use keyward::store::{
    Actor, Allowance, Applied, AuditAction, AuditEntry, ConnectionStatus, CreditChange, CustomerLink, KeyStatus,
    LedgerKind, NewLlmKey, OAuthConnection, OnceKey, OneTimeState, Payment, ProfileUpdate, RefundRecord, SessionFamily,
    Settled, Settlement, StatePurpose, Store, StoreError, StoredLlmKey, TestResult, now_epoch,
};
use keyward_sandbox::aws_proxy::{AwsProxy, Fault};
use keyward_tests::TestStore;

/// Runs each named contract test on both backends.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let backend = keyward_tests::TestStore::embedded();
                super::$name(backend.store()).await;
            })*
        }
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let backend = keyward_tests::TestStore::memory();
                super::$name(backend.store()).await;
            })*
        }
        mod dynamodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let backend = keyward_tests::TestStore::dynamo().await;
                super::$name(backend.store()).await;
            })*
        }
    };
}

contract!(
    profiles_keep_their_creation_time,
    llm_keys_round_trip_and_replace,
    a_key_is_stored_with_its_audit_entry_or_not_at_all,
    sessions_rotate_once_and_revoke_for_good,
    concurrent_rotations_of_one_handle_let_one_win,
    llm_key_tests_and_deletes,
    last_used_is_written_at_most_once_a_minute,
    states_are_consumed_exactly_once,
    expired_states_are_absent,
    concurrent_consumers_of_one_state_get_it_once,
    oauth_saves_are_version_guarded,
    credits_apply_with_ledger_and_once_keys,
    concurrent_consumes_never_overdraw,
    audit_pages_newest_first,
    stripe_customers_link_once_to_their_first_user,
    payments_settle_against_the_version_read,
    foreign_or_tampered_cursors_are_refused,
    limits_grant_up_to_the_limit_per_window,
    branch_keys_start_once_rotate_guarded_and_retire,
    the_sweep_finds_every_sealed_value_with_its_context,
    concurrent_takers_never_exceed_the_limit,
    device_polls_are_spaced_to_the_millisecond,
    concurrent_device_polls_take_one_turn,
);

fn user(name: &str) -> UserId {
    UserId::parse(&format!("auth0|{name}")).unwrap()
}

fn sealed(tag: u8) -> Sealed {
    Sealed {
        wrapping: Wrapping::Branch {
            version: BranchVersion::from_bytes([tag; 16]),
            salt: [tag; 32],
            commitment: [tag; 32],
        },
        nonce: [tag; 12],
        ciphertext: vec![tag; 48],
    }
}

async fn profiles_keep_their_creation_time(store: &Store) {
    let alice = user("alice");
    assert!(store.users().get(&alice).await.unwrap().is_none());
    let update = ProfileUpdate {
        id: alice.clone(),
        email: Some("alice@example.com".into()),
        email_verified: false,
        name: Some("Alice".into()),
        picture: None,
    };
    let first = store.users().upsert(&update, 1_000).await.unwrap();
    assert_eq!((first.created_at, first.last_login_at), (1_000, 1_000));
    let verified = ProfileUpdate { email_verified: true, name: None, ..update };
    let second = store.users().upsert(&verified, 2_000).await.unwrap();
    assert_eq!((second.created_at, second.last_login_at), (1_000, 2_000));
    assert!(second.email_verified);
    assert_eq!(second.name, None, "a field the sign-in no longer carries is cleared");
    assert_eq!(store.users().get(&alice).await.unwrap(), Some(second));
}

fn new_key(provider: Provider, tag: u8) -> NewLlmKey {
    NewLlmKey {
        provider,
        sealed: sealed(tag),
        preview: "sk-p…wxyz".into(),
        status: KeyStatus::Valid,
        test: Some(TestResult { ok: true, message: "The key works.".into(), at: 500 }),
        zai_region: (provider == Provider::Zai).then_some(ZaiRegion::China),
    }
}

/// The audited put production makes (`keys.store_key`): the key and its audit entry together.
async fn put(store: &Store, user: &UserId, new: &NewLlmKey, now: i64) -> StoredLlmKey {
    let entry = AuditEntry {
        at: now,
        actor: Actor::User { user: user.clone(), via: Some(keyward::model::Credential::AccessToken) },
        action: AuditAction::LlmKeyPut,
        target: Some(new.provider.slug().into()),
        outcome: "ok".into(),
    };
    store.llm_keys().put_audited(user, new, now, &entry).await.unwrap()
}

async fn a_key_is_stored_with_its_audit_entry_or_not_at_all(store: &Store) {
    let alice = user("alice");
    let stored = put(store, &alice, &new_key(Provider::OpenAi, 1), 1_000).await;
    assert_eq!((stored.sealed, stored.created_at), (sealed(1), 1_000));
    let trail = store.audit().list(&alice, 10, None).await.unwrap().items;
    assert_eq!(
        trail.iter().map(|e| (e.action, e.target.as_deref())).collect::<Vec<_>>(),
        [(AuditAction::LlmKeyPut, Some("openai"))]
    );
    // A replacement keeps the first creation time and writes its own entry.
    let replaced = put(store, &alice, &new_key(Provider::OpenAi, 2), 2_000).await;
    assert_eq!((replaced.sealed, replaced.created_at, replaced.updated_at), (sealed(2), 1_000, 2_000));
    assert_eq!(store.audit().list(&alice, 10, None).await.unwrap().items.len(), 2);
}

fn family(id: &str, handle: &str) -> SessionFamily {
    SessionFamily {
        id: id.into(),
        user: user("alice"),
        client: ClientKind::Device,
        sealed_refresh: sealed(1),
        current_handle: handle.into(),
        binding: None,
        active: true,
    }
}

/// A binding MAC as the store keeps it (the store never checks one: the use case does).
fn binding(n: u8) -> Tag {
    Tag { version: BranchVersion::parse("00000000000000000000000000000001").unwrap(), mac: [n; 32] }
}

/// What `sessions.refresh` relies on: a family found by any of its handles, a rotation only from
/// the current one, and a revoked family for good.
async fn sessions_rotate_once_and_revoke_for_good(store: &Store) {
    let sessions = store.sessions();
    sessions.create(&family("f1", "h1"), &binding(1), now_epoch()).await.unwrap();
    let found = sessions.find("h1").await.unwrap().unwrap();
    assert_eq!(
        (&found.user, found.client, found.current_handle.as_str(), found.binding.clone(), found.active),
        (&user("alice"), ClientKind::Device, "h1", Some(binding(1)), true)
    );
    assert!(sessions.rotate(&found, "h1", ("h2", &sealed(2), &binding(2)), now_epoch()).await.unwrap());
    let late = sessions.rotate(&found, "h1", ("h3", &sealed(3), &binding(3)), now_epoch()).await.unwrap();
    assert!(!late, "h1 is no longer current");
    let by_old = sessions.find("h1").await.unwrap().unwrap();
    assert_eq!(
        (by_old.current_handle.as_str(), by_old.sealed_refresh, by_old.binding),
        ("h2", sealed(2), Some(binding(2))),
        "an old handle finds its family, bound anew"
    );
    assert!(sessions.find("h3").await.unwrap().is_none());
    sessions.revoke("f1", now_epoch()).await.unwrap();
    sessions.revoke("f1", now_epoch()).await.unwrap();
    let revoked = sessions.find("h2").await.unwrap().unwrap();
    assert!(!revoked.active);
    assert!(
        !sessions.rotate(&revoked, "h2", ("h4", &sealed(4), &binding(4)), now_epoch()).await.unwrap(),
        "a revoked family never rotates"
    );
}

async fn concurrent_rotations_of_one_handle_let_one_win(store: &Store) {
    let store = Arc::new(store.clone());
    store.sessions().create(&family("f2", "current"), &binding(1), now_epoch()).await.unwrap();
    let found = store.sessions().find("current").await.unwrap().unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, found) = (Arc::clone(&store), found.clone());
            tokio::spawn(async move {
                let next = format!("next-{i}");
                store.sessions().rotate(&found, "current", (&next, &sealed(5), &binding(5)), now_epoch()).await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap().unwrap());
    }
    assert_eq!(winners, 1, "one rotation wins, the others see a reuse");
}

async fn llm_keys_round_trip_and_replace(store: &Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    let keys = store.llm_keys();
    put(store, &alice, &new_key(Provider::OpenAi, 1), 1_000).await;
    put(store, &alice, &new_key(Provider::Anthropic, 2), 1_000).await;
    put(store, &bob, &new_key(Provider::OpenAi, 3), 1_000).await;

    let stored = keys.get(&alice, Provider::OpenAi).await.unwrap().unwrap();
    assert_eq!(stored.sealed, sealed(1));
    assert_eq!(stored.status, KeyStatus::Valid);
    assert_eq!(stored.last_validated_at, Some(500));
    assert_eq!(stored.last_test.as_ref().map(|t| t.message.as_str()), Some("The key works."));

    let mut listed: Vec<Provider> = keys.list(&alice).await.unwrap().iter().map(|k| k.provider).collect();
    listed.sort();
    assert_eq!(listed, vec![Provider::OpenAi, Provider::Anthropic]);
    assert_eq!(keys.list(&bob).await.unwrap().len(), 1, "users never see each other's keys");
    let asked = [Provider::Zai, Provider::OpenAi, Provider::Anthropic, Provider::Gemini];
    let read: Vec<(Provider, Sealed)> =
        keys.get_many(&alice, &asked).await.unwrap().into_iter().map(|k| (k.provider, k.sealed)).collect();
    assert_eq!(
        read,
        vec![(Provider::OpenAi, sealed(1)), (Provider::Anthropic, sealed(2))],
        "the stored ones asked for"
    );
    let read: Vec<Provider> = keys.get_many(&bob, &asked[2..]).await.unwrap().iter().map(|k| k.provider).collect();
    assert!(read.is_empty(), "only the providers asked for: {read:?}");

    let replaced = put(store, &alice, &new_key(Provider::OpenAi, 9), 2_000).await;
    assert_eq!((replaced.created_at, replaced.updated_at), (1_000, 2_000));
    assert_eq!(replaced.sealed, sealed(9));
    assert!(keys.get(&alice, Provider::Zai).await.unwrap().is_none());

    put(store, &alice, &new_key(Provider::Zai, 4), 1_000).await;
    let zai = keys.get(&alice, Provider::Zai).await.unwrap().unwrap();
    assert_eq!((zai.zai_region, stored.zai_region), (Some(ZaiRegion::China), None));
}

async fn llm_key_tests_and_deletes(store: &Store) {
    let alice = user("alice");
    let keys = store.llm_keys();
    put(store, &alice, &new_key(Provider::OpenAi, 1), 1_000).await;
    let failed = TestResult { ok: false, message: "Insufficient credits.".into(), at: 1_500 };
    let after = keys.record_test(&alice, Provider::OpenAi, KeyStatus::Invalid, &failed).await.unwrap().unwrap();
    assert_eq!(after.status, KeyStatus::Invalid);
    assert_eq!(after.last_test, Some(failed.clone()));
    assert_eq!(after.last_validated_at, Some(500), "a failed test keeps the last good validation time");
    // Testing a key that is gone records nothing and does not resurrect it.
    assert!(keys.record_test(&alice, Provider::Zai, KeyStatus::Valid, &failed).await.unwrap().is_none());
    assert!(keys.get(&alice, Provider::Zai).await.unwrap().is_none());

    assert!(keys.delete(&alice, Provider::OpenAi).await.unwrap());
    assert!(!keys.delete(&alice, Provider::OpenAi).await.unwrap(), "deleting twice is harmless");
    for p in [Provider::Gemini, Provider::Perplexity, Provider::Zai] {
        put(store, &alice, &new_key(p, 4), 1_000).await;
    }
    let mut deleted = keys.delete_all(&alice).await.unwrap();
    deleted.sort();
    assert_eq!(deleted, [Provider::Gemini, Provider::Perplexity, Provider::Zai]);
    assert!(keys.list(&alice).await.unwrap().is_empty());
    assert!(keys.delete_all(&alice).await.unwrap().is_empty());
}

async fn last_used_is_written_at_most_once_a_minute(store: &Store) {
    let alice = user("alice");
    let keys = store.llm_keys();
    assert!(!keys.touch_last_used(&alice, Provider::OpenAi, 1_000, 60).await.unwrap(), "no key, no write");
    put(store, &alice, &new_key(Provider::OpenAi, 1), 1_000).await;
    assert!(keys.touch_last_used(&alice, Provider::OpenAi, 1_000, 60).await.unwrap());
    assert!(!keys.touch_last_used(&alice, Provider::OpenAi, 1_030, 60).await.unwrap());
    assert!(!keys.touch_last_used(&alice, Provider::OpenAi, 1_059, 60).await.unwrap());
    assert!(keys.touch_last_used(&alice, Provider::OpenAi, 1_060, 60).await.unwrap());
    assert_eq!(keys.get(&alice, Provider::OpenAi).await.unwrap().unwrap().last_used_at, Some(1_060));
    assert!(keys.get(&alice, Provider::OpenAi).await.unwrap().is_some(), "touching never deletes");
}

fn state(purpose: StatePurpose, expires_at: i64) -> OneTimeState {
    OneTimeState {
        purpose,
        user: Some(user("alice")),
        return_to: Some("https://app.example.com/after".into()),
        sealed_verifier: sealed(9),
        browser: Some("a".repeat(64)),
        expires_at,
    }
}

async fn states_are_consumed_exactly_once(store: &Store) {
    let states = store.states();
    let later = now_epoch() + 600;
    states.create("state-one", &state(StatePurpose::Auth0Login, later)).await.unwrap();
    let err = states.create("state-one", &state(StatePurpose::Auth0Login, later)).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { .. }), "a live state is never overwritten");

    assert!(
        states.consume("state-one", StatePurpose::Connect(OAuthProvider::Google)).await.unwrap().is_none(),
        "wrong purpose"
    );
    let taken = states.consume("state-one", StatePurpose::Auth0Login).await.unwrap().unwrap();
    assert_eq!(taken.user, Some(user("alice")));
    assert_eq!(taken.return_to.as_deref(), Some("https://app.example.com/after"));
    assert_eq!((taken.sealed_verifier, taken.browser), (sealed(9), Some("a".repeat(64))));
    assert!(states.consume("state-one", StatePurpose::Auth0Login).await.unwrap().is_none(), "replay");
    assert!(states.consume("never-issued", StatePurpose::Auth0Login).await.unwrap().is_none());
}

async fn expired_states_are_absent(store: &Store) {
    let states = store.states();
    states.create("stale", &state(StatePurpose::Connect(OAuthProvider::Google), now_epoch() - 1)).await.unwrap();
    assert!(states.consume("stale", StatePurpose::Connect(OAuthProvider::Google)).await.unwrap().is_none());
    // An expired item the backend has not deleted yet does not block a new one with the same key.
    states.create("stale", &state(StatePurpose::Connect(OAuthProvider::Google), now_epoch() + 600)).await.unwrap();
    assert!(states.consume("stale", StatePurpose::Connect(OAuthProvider::Google)).await.unwrap().is_some());
}

async fn concurrent_consumers_of_one_state_get_it_once(store: &Store) {
    store.states().create("contested", &state(StatePurpose::Auth0Login, now_epoch() + 600)).await.unwrap();
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.states().consume("contested", StatePurpose::Auth0Login).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
}

async fn oauth_saves_are_version_guarded(store: &Store) {
    let alice = user("alice");
    let connections = store.oauth_connections(OAuthProvider::Google);
    let connection = OAuthConnection {
        user: alice.clone(),
        provider: OAuthProvider::Google,
        email: "alice@gmail.com".into(),
        email_verified: true,
        account_id: Some("104875632109876543210".into()),
        scopes: vec!["https://www.googleapis.com/auth/calendar".into(), "openid".into()],
        refresh_token: Some(sealed(1)),
        access_token: sealed(2),
        access_expires_at: 5_000,
        status: ConnectionStatus::Connected,
        connected_at: 1_000,
        last_refreshed_at: None,
        version: 0,
        refresh_lease_until: None,
    };
    let saved = connections.save(&connection, None).await.unwrap().unwrap();
    assert_eq!(saved.version, 1);
    assert_eq!(saved.scopes, connection.scopes);

    let refreshed = OAuthConnection { access_token: sealed(3), last_refreshed_at: Some(4_000), ..saved.clone() };
    let v2 = connections.save(&refreshed, Some(1)).await.unwrap().unwrap();
    assert_eq!(v2.version, 2);
    // A second refresher that read version 1 loses and must re-read.
    assert!(connections.save(&refreshed, Some(1)).await.unwrap().is_none());
    let read = connections.get(&alice).await.unwrap().unwrap();
    assert_eq!((read.version, read.access_token.clone(), read.refresh_token.clone()), (2, sealed(3), Some(sealed(1))));

    // One refresh lease at a time, for the version read; a save ends it, a release gives it back.
    assert!(connections.take_refresh_lease(&alice, 2, 4_000, 4_015).await.unwrap());
    assert!(!connections.take_refresh_lease(&alice, 2, 4_001, 4_016).await.unwrap(), "still leased");
    assert!(connections.get(&alice).await.unwrap().unwrap().is_leased(4_010));
    assert!(connections.take_refresh_lease(&alice, 2, 4_015, 4_030).await.unwrap(), "an expired lease is taken over");
    connections.release_refresh_lease(&alice, 2).await.unwrap();
    assert!(!connections.get(&alice).await.unwrap().unwrap().is_leased(4_016));
    assert!(!connections.take_refresh_lease(&alice, 1, 4_016, 4_031).await.unwrap(), "a stale version");
    assert!(connections.take_refresh_lease(&alice, 2, 4_016, 4_031).await.unwrap());
    let v3 = connections.save(&v2, Some(2)).await.unwrap().unwrap();
    assert_eq!((v3.version, v3.refresh_lease_until), (3, None), "a save ends the lease");
    assert!(!connections.take_refresh_lease(&user("bob"), 1, 4_016, 4_031).await.unwrap(), "no connection");

    assert!(connections.delete(&alice).await.unwrap());
    assert!(!connections.delete(&alice).await.unwrap());
    assert!(connections.get(&alice).await.unwrap().is_none());
}

fn change(kind: LedgerKind, amount: i64, source: &str, at: i64) -> CreditChange {
    CreditChange { kind, amount, source: source.into(), at }
}

fn consumption(key: &str, request: &str) -> OnceKey {
    OnceKey::idempotency("arn:aws:iam::111122223333:role/billing", &user("alice"), key, request)
}

async fn credits_apply_with_ledger_and_once_keys(store: &Store) {
    let alice = user("alice");
    let credits = store.credits();
    assert_eq!(credits.account(&alice).await.unwrap().balance, 0);

    let purchase = change(LedgerKind::Purchase, 100, "evt_1", 1_000);
    let once = [OnceKey::StripeEvent("evt_1".into()), OnceKey::StripeObject("cs_1".into())];
    let payment = Payment::new("pi_1", &alice, 100, 2_000);
    let applied = credits.apply(&alice, &purchase, &once, &[payment.item()]).await.unwrap();
    let Applied::Applied(entry) = applied else { panic!("applied") };
    assert_eq!(entry.balance_after, 100);
    assert_eq!(store.payments().history("pi_1").await.unwrap().unwrap().payment, payment, "recorded with it");

    // The same event again, or another event for the same checkout session: no second effect.
    assert_eq!(
        credits.apply(&alice, &purchase, &once, &[]).await.unwrap(),
        Applied::Duplicate { balance_after: Some(100) }
    );
    let other_event = [OnceKey::StripeEvent("evt_2".into()), OnceKey::StripeObject("cs_1".into())];
    assert!(matches!(credits.apply(&alice, &purchase, &other_event, &[]).await.unwrap(), Applied::Duplicate { .. }));
    assert_eq!(credits.account(&alice).await.unwrap().balance, 100);
    assert!(credits.mark_once(&OnceKey::StripeEvent("evt_2".into()), 1_000).await.unwrap(), "evt_2 was rolled back");
    // A record that exists already makes the whole change a duplicate, and nothing of it lands.
    let again = [OnceKey::StripeEvent("evt_3".into())];
    assert!(matches!(
        credits.apply(&alice, &purchase, &again, &[payment.item()]).await.unwrap(),
        Applied::Duplicate { .. }
    ));
    assert!(credits.mark_once(&again[0], 1_000).await.unwrap(), "evt_3 was rolled back");

    let consume = change(LedgerKind::Consume, -30, "notes", 1_100);
    let idem = [consumption("idem-1", "30 notes")];
    assert!(
        matches!(credits.apply(&alice, &consume, &idem, &[]).await.unwrap(), Applied::Applied(e) if e.balance_after == 70)
    );
    assert_eq!(
        credits.apply(&alice, &consume, &idem, &[]).await.unwrap(),
        Applied::Duplicate { balance_after: Some(70) }
    );
    // The same key with another request is no repeat, and changes nothing.
    let other_request = [consumption("idem-1", "31 notes")];
    assert_eq!(credits.apply(&alice, &consume, &other_request, &[]).await.unwrap(), Applied::Mismatch);
    // Keys are the caller's own: another caller's key of the same name is another key.
    let other_caller = [OnceKey::idempotency("arn:aws:iam::111122223333:role/notes", &alice, "idem-1", "30 notes")];
    assert!(
        matches!(credits.apply(&alice, &consume, &other_caller, &[]).await.unwrap(), Applied::Applied(e) if e.balance_after == 40)
    );

    let too_much = change(LedgerKind::Consume, -41, "notes", 1_200);
    assert_eq!(
        credits.apply(&alice, &too_much, &[consumption("idem-2", "41")], &[]).await.unwrap(),
        Applied::Insufficient { balance: 40 }
    );
    // A clawback may take the balance below zero, and says so in the ledger.
    let clawback = change(LedgerKind::Refund, -80, "evt_r", 1_300);
    assert!(
        matches!(credits.apply(&alice, &clawback, &[], &[]).await.unwrap(), Applied::Applied(e) if e.balance_after == -40)
    );
    // Past 64 bits nothing changes.
    let huge = change(LedgerKind::Purchase, i64::MAX, "evt_huge", 1_400);
    assert!(
        matches!(credits.apply(&alice, &huge, &[], &[]).await.unwrap(), Applied::Applied(e) if e.balance_after == i64::MAX - 40)
    );
    assert_eq!(credits.apply(&alice, &huge, &[], &[]).await.unwrap(), Applied::Overflow);

    let ledger = credits.ledger(&alice, 50, None).await.unwrap();
    let amounts: Vec<i64> = ledger.items.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, vec![i64::MAX, -80, -30, -30, 100], "newest first, one entry per applied change");
    assert!(!credits.mark_once(&OnceKey::StripeEvent("evt_1".into()), 2_000).await.unwrap());
}

/// A payment's history settles one event at a time: a settlement made from a stale read of the
/// payment (another event landed in between) changes nothing and says so.
async fn payments_settle_against_the_version_read(store: &Store) {
    let alice = user("alice");
    let payment = Payment::new("pi_9", &alice, 400, 1_000);
    let purchase = change(LedgerKind::Purchase, 400, "evt_p", 1_000);
    store.credits().apply(&alice, &purchase, &[], &[payment.item()]).await.unwrap();
    let history = store.payments().history("pi_9").await.unwrap().unwrap();
    assert!(store.payments().history("pi_unknown").await.unwrap().is_none());
    let refund = RefundRecord { id: "re_1".into(), amount: 250, takes_money: true, created: 1_100, seen_at: 1_101 };
    let settlement = |event: &str, refunds: Vec<RefundRecord>, clawed_back: i64| Settlement {
        event: OnceKey::StripeEvent(event.into()),
        at: 1_101,
        clawed_back,
        charge_refunded: 0,
        charge_refunded_at: 0,
        refunds,
        disputes: vec![],
        credit: Some(change(LedgerKind::Refund, -clawed_back, event, 1_101)),
    };
    let settled = store.payments().settle(&history, &settlement("evt_r1", vec![refund.clone()], 100)).await.unwrap();
    assert!(matches!(settled, Settled::Applied(Some(e)) if e.balance_after == 300));
    assert_eq!(
        store.payments().settle(&history, &settlement("evt_r1", vec![], 100)).await.unwrap(),
        Settled::Duplicate
    );
    // The same read again, for another event: the payment moved on, so this is refused whole.
    assert_eq!(
        store.payments().settle(&history, &settlement("evt_r2", vec![], 200)).await.unwrap(),
        Settled::Contended
    );
    let now = store.payments().history("pi_9").await.unwrap().unwrap();
    assert_eq!((now.payment.clawed_back, now.payment.version), (100, 2));
    assert_eq!(now.refunds, vec![refund]);
    assert_eq!(store.credits().account(&alice).await.unwrap().balance, 300, "one clawback, not two");
    assert!(store.credits().mark_once(&OnceKey::StripeEvent("evt_r2".into()), 1).await.unwrap(), "rolled back");
}

async fn stripe_customers_link_once_to_their_first_user(store: &Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    let credits = store.credits();
    assert_eq!(credits.customer_owner("cus_A").await.unwrap(), None);
    assert_eq!(credits.link_customer("cus_A", &alice, 1).await.unwrap(), CustomerLink::Linked);
    assert_eq!(credits.link_customer("cus_A", &alice, 2).await.unwrap(), CustomerLink::Linked, "again: the same");
    // Pointing the customer at someone else is refused: the first link stands.
    assert_eq!(credits.link_customer("cus_A", &bob, 3).await.unwrap(), CustomerLink::Owned(alice.clone()));
    assert_eq!(credits.customer_owner("cus_A").await.unwrap(), Some(alice.clone()));
    // A user may own several customers.
    assert_eq!(credits.link_customer("cus_A2", &alice, 4).await.unwrap(), CustomerLink::Linked);
    assert_eq!(credits.customer_owner("cus_A2").await.unwrap(), Some(alice.clone()));
    assert_eq!(credits.customer_owner("cus_A").await.unwrap(), Some(alice.clone()));
    // Racing links of one customer to two users: exactly one wins, and both see who.
    let racers = [alice.clone(), bob.clone()].map(|racer| {
        let store = store.clone();
        tokio::spawn(async move { (store.credits().link_customer("cus_race", &racer, 5).await.unwrap(), racer) })
    });
    let mut linked = Vec::new();
    for racer in racers {
        if let (CustomerLink::Linked, who) = racer.await.unwrap() {
            linked.push(who);
        }
    }
    assert_eq!(linked.len(), 1);
    assert_eq!(credits.customer_owner("cus_race").await.unwrap().as_ref(), linked.first());
}

/// A client's paging cursor is checked against the query it continues: another user's, another
/// listing's (the ledger for the audit trail), a tampered or malformed one is refused, never run.
async fn foreign_or_tampered_cursors_are_refused(store: &Store) {
    use base64::Engine;
    let (alice, bob) = (user("alice"), user("bob"));
    for at in 0..3 {
        store.credits().apply(&alice, &change(LedgerKind::Purchase, 1, "evt", at), &[], &[]).await.unwrap();
        let entry = AuditEntry {
            at,
            actor: Actor::System,
            action: AuditAction::LlmKeyTest,
            target: None,
            outcome: "ok".into(),
        };
        store.audit().append(&alice, &entry).await.unwrap();
    }
    let first = store.credits().ledger(&alice, 1, None).await.unwrap();
    let cursor = first.next.expect("a next page");
    assert_eq!(store.credits().ledger(&alice, 1, Some(&cursor)).await.unwrap().items.len(), 1, "its own next page");
    let encode = |json: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string());
    let tampered = [
        ("another user's", cursor.clone(), &bob),
        ("the audit trail's", store.audit().list(&alice, 1, None).await.unwrap().next.unwrap(), &alice),
        ("not base64", "%%%".to_owned(), &alice),
        ("not JSON", encode(serde_json::json!("x")), &alice),
        ("outside the range", encode(serde_json::json!({"pk": "USER#auth0|alice", "sk": "PROFILE"})), &alice),
        (
            "an extra key",
            encode(serde_json::json!({"pk": "USER#auth0|alice", "sk": "LEDGER#1", "gsi1pk": "x"})),
            &alice,
        ),
        ("no sort key", encode(serde_json::json!({"pk": "USER#auth0|alice"})), &alice),
        ("too long", "A".repeat(5_000), &alice),
    ];
    for (what, raw, owner) in tampered {
        let err = store.credits().ledger(owner, 1, Some(&raw)).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidCursor), "{what}: {err}");
    }
}

async fn concurrent_consumes_never_overdraw(store: &Store) {
    let alice = user("alice");
    store.credits().apply(&alice, &change(LedgerKind::Purchase, 10, "evt_seed", 1), &[], &[]).await.unwrap();
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = (0..25)
        .map(|i| {
            let (store, alice) = (Arc::clone(&store), alice.clone());
            tokio::spawn(async move {
                let once = [consumption(&format!("c{i}"), "1")];
                store
                    .credits()
                    .apply(&alice, &change(LedgerKind::Consume, -1, &format!("c{i}"), 2), &once, &[])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        match task.await.unwrap() {
            Applied::Applied(_) => applied += 1,
            Applied::Insufficient { balance } => assert_eq!(balance, 0),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 10);
    let account = store.credits().account(&alice).await.unwrap();
    assert_eq!(account.balance, 0);
    let ledger = store.credits().ledger(&alice, 100, None).await.unwrap();
    assert_eq!(ledger.items.len(), 11);
    assert_eq!(ledger.items.iter().map(|e| e.amount).sum::<i64>(), 0);
}

async fn audit_pages_newest_first(store: &Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    for (at, action) in
        [(1_000, AuditAction::LlmKeyPut), (2_000, AuditAction::LlmKeyTest), (3_000, AuditAction::LlmKeyDelete)]
    {
        let entry = AuditEntry {
            at,
            actor: Actor::User { user: alice.clone(), via: None },
            action,
            target: Some("openai".into()),
            outcome: "ok".into(),
        };
        store.audit().append(&alice, &entry).await.unwrap();
    }
    let service = AuditEntry {
        at: 4_000,
        actor: Actor::Service("arn:aws:sts::123456789012:assumed-role/notes/s".into()),
        action: AuditAction::LlmKeyFetch,
        target: None,
        outcome: "ok".into(),
    };
    store.audit().append(&bob, &service).await.unwrap();

    let first = store.audit().list(&alice, 2, None).await.unwrap();
    let actions: Vec<AuditAction> = first.items.iter().map(|e| e.action).collect();
    assert_eq!(actions, vec![AuditAction::LlmKeyDelete, AuditAction::LlmKeyTest]);
    let cursor = first.next.expect("a second page");
    let second = store.audit().list(&alice, 2, Some(&cursor)).await.unwrap();
    assert_eq!(second.items.iter().map(|e| e.action).collect::<Vec<_>>(), vec![AuditAction::LlmKeyPut]);
    // Alice's cursor cannot page through Bob's trail.
    let refused = store.audit().list(&bob, 2, Some(&cursor)).await.unwrap_err();
    assert!(matches!(refused, StoreError::InvalidCursor), "{refused}");
    assert_eq!(store.audit().list(&bob, 2, None).await.unwrap().items, vec![service]);
}

/// The embedded store keeps everything across a restart (it is a file, not a map in memory).
#[tokio::test]
async fn embedded_store_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let alice = user("alice");
    {
        let store = Store::new(Arc::new(keyward::store::EmbeddedTable::open(dir.path()).unwrap()));
        put(&store, &alice, &new_key(Provider::OpenAi, 7), 1_000).await;
        store.credits().apply(&alice, &change(LedgerKind::Purchase, 5, "evt", 1), &[], &[]).await.unwrap();
    }
    let reopened = Store::new(Arc::new(keyward::store::EmbeddedTable::open(dir.path()).unwrap()));
    assert_eq!(reopened.llm_keys().get(&alice, Provider::OpenAi).await.unwrap().unwrap().sealed, sealed(7));
    assert_eq!(reopened.credits().account(&alice).await.unwrap().balance, 5);
}

/// `get_many` past DynamoDB's 100 keys per `BatchGetItem`: every live item asked for, none of the
/// absent or expired ones, on both backends.
#[tokio::test]
async fn batch_reads_return_the_live_items_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let dynamo = keyward_tests::TestTable::new().await;
    let tables: [Arc<dyn Table>; 2] = [
        Arc::new(keyward::store::EmbeddedTable::open(dir.path()).unwrap()),
        Arc::new(keyward::store::DynamoTable::new(dynamo.client.clone(), &dynamo.name)),
    ];
    let key = |i: i64| Key::new("BATCH#many", format!("ITEM#{i:03}"));
    for table in tables {
        let now = now_epoch();
        for i in 0..130 {
            let item = Item::new(&key(i)).with("n", Attr::N(i));
            let item = if i % 10 == 9 { item.with(EXPIRES_AT, Attr::N(now - 10)) } else { item };
            table.put(item, None).await.unwrap();
        }
        let asked: Vec<Key> = (0..140).map(key).collect();
        let mut read: Vec<i64> = table.get_many(&asked).await.unwrap().iter().map(|i| i.n("n").unwrap()).collect();
        read.sort_unstable();
        assert_eq!(read, (0..130).filter(|i| i % 10 != 9).collect::<Vec<_>>(), "{}", table.backend());
        assert!(table.get_many(&[]).await.unwrap().is_empty());
    }
}

/// A test's table and KMS key are made with one attempt that waits: a create answered later than
/// keyward's attempt timeout would otherwise be retried, and the retry fail on the table the first
/// attempt made (or make a second key).
#[tokio::test]
async fn a_tests_table_and_key_are_made_once_however_late_moto_answers() {
    let proxy = AwsProxy::start(&keyward_tests::moto_url()).await.unwrap();
    proxy.fail_times("DynamoDB.CreateTable", 0, 1, Fault::Late);
    proxy.fail_times("KMS.CreateKey", 0, 1, Fault::Late);
    let aws = keyward_tests::aws_at(&proxy.url()).await;
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let name = keyward_tests::unique_name("keyward-late");
    keyward_tests::create_test_table(&aws, &name).await;
    assert!(!keyward_tests::kms_key(&aws).await.is_empty());
    let counts = proxy.take_counts();
    assert_eq!((counts["DynamoDB.CreateTable"], counts["KMS.CreateKey"]), (1, 1), "one attempt each");
    let table = keyward::store::DynamoTable::new(client.clone(), &name);
    table.put(Item::new(&Key::new("LATE#1", "ITEM")), None).await.unwrap();
    client.delete_table().table_name(&name).send().await.unwrap();
}

/// Each backend reports the name the health route shows.
#[tokio::test]
async fn backends_name_themselves() {
    assert_eq!(TestStore::embedded().store().backend(), "embedded");
    assert_eq!(TestStore::memory().store().backend(), "memory");
    assert_eq!(TestStore::dynamo().await.store().backend(), "dynamodb");
}

async fn limits_grant_up_to_the_limit_per_window(store: &Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    let limits = store.limits();
    // 10_000 is 46 minutes and 40 seconds into its hour.
    for _ in 0..3 {
        assert_eq!(limits.take(&alice, "validate:openai", 3, 3_600, 10_000).await.unwrap(), Allowance::Granted);
    }
    let refused = limits.take(&alice, "validate:openai", 3, 3_600, 10_001).await.unwrap();
    assert_eq!(refused, Allowance::Refused { retry_after_secs: 799 });
    assert_eq!(limits.take(&alice, "validate:zai", 3, 3_600, 10_001).await.unwrap(), Allowance::Granted);
    assert_eq!(limits.take(&bob, "validate:openai", 3, 3_600, 10_001).await.unwrap(), Allowance::Granted);
    assert_eq!(
        limits.take(&alice, "validate:openai", 3, 3_600, 10_800).await.unwrap(),
        Allowance::Granted,
        "a new hour"
    );
}

async fn concurrent_takers_never_exceed_the_limit(store: &Store) {
    let alice = user("alice");
    let takers = (0..8).map(|_| {
        let store = store.clone();
        let alice = alice.clone();
        tokio::spawn(async move {
            loop {
                match store.limits().take(&alice, "validate:anthropic", 5, 3_600, 20_000).await {
                    Ok(allowance) => return allowance,
                    // A conflicting concurrent write is retried, as the SDK's own retries would.
                    Err(StoreError::Conflict) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    });
    let mut granted = 0;
    for taker in takers {
        if taker.await.unwrap() == Allowance::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted, 5);
}

async fn device_polls_are_spaced_to_the_millisecond(store: &Store) {
    let devices = store.devices();
    devices.create("hash-a", 5, now_epoch() + 900).await.unwrap();
    // 4.002 s apart across five second boundaries: too soon, though whole seconds would say 5.
    assert!(devices.take_poll("hash-a", 1_000_999, 5).await.unwrap(), "the first poll");
    assert!(!devices.take_poll("hash-a", 1_005_001, 5).await.unwrap(), "4.002 s after the first");
    assert!(!devices.take_poll("hash-a", 1_005_998, 5).await.unwrap(), "4.999 s after the first");
    assert!(devices.take_poll("hash-a", 1_005_999, 5).await.unwrap(), "5 s after the first");
    // slow_down grows the interval for good and counts it from the refused poll.
    assert_eq!(devices.slow_down("hash-a", 1_007_000).await.unwrap(), 10);
    assert_eq!(devices.get("hash-a").await.unwrap().unwrap().interval, 10);
    assert!(!devices.take_poll("hash-a", 1_016_999, 10).await.unwrap(), "9.999 s after the slow_down");
    assert!(devices.take_poll("hash-a", 1_017_000, 10).await.unwrap(), "10 s after the slow_down");
    assert!(!devices.take_poll("hash-b", 1_017_000, 5).await.unwrap(), "an unknown device has no turn");
}

async fn concurrent_device_polls_take_one_turn(store: &Store) {
    store.devices().create("hash-c", 5, now_epoch() + 900).await.unwrap();
    let pollers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                match store.devices().take_poll("hash-c", 2_000_000 + i, 5).await {
                    Ok(taken) => return taken,
                    Err(StoreError::Conflict) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        })
    });
    let mut taken = 0;
    for poller in pollers {
        if poller.await.unwrap() {
            taken += 1;
        }
    }
    assert_eq!(taken, 1);
}

fn branch_key(purpose: Purpose, tag: u8, at: i64) -> WrappedBranchKey {
    WrappedBranchKey {
        purpose,
        version: BranchVersion::random(),
        key_id: "arn:aws:kms:us-east-1:123456789012:key/test".into(),
        wrapped: vec![tag; 184],
        created_at: at,
    }
}

async fn branch_keys_start_once_rotate_guarded_and_retire(store: &Store) {
    let keyring = store.keyring();
    assert!(keyring.active(Purpose::LlmKey).await.unwrap().is_none());
    let (first, rival) = (branch_key(Purpose::LlmKey, 1, 10), branch_key(Purpose::LlmKey, 2, 10));
    let (a, b) = tokio::join!(keyring.create_first(&first), keyring.create_first(&rival));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "racing first versions agree on one");
    let winner = a;
    assert_eq!(keyring.active(Purpose::LlmKey).await.unwrap().as_ref(), Some(&winner));
    assert!(keyring.active(Purpose::Auth0Refresh).await.unwrap().is_none(), "each purpose has its own");

    let next = branch_key(Purpose::LlmKey, 3, 20);
    let stale = branch_key(Purpose::LlmKey, 4, 20);
    assert!(!keyring.rotate(&stale, Some(next.version)).await.unwrap(), "not the active version: refused");
    assert!(keyring.rotate(&next, Some(winner.version)).await.unwrap());
    assert!(!keyring.rotate(&stale, Some(winner.version)).await.unwrap(), "a second rotation from one version loses");
    assert_eq!(keyring.active(Purpose::LlmKey).await.unwrap().map(|k| k.version), Some(next.version));
    let versions: Vec<_> = keyring.versions(Purpose::LlmKey).await.unwrap().into_iter().map(|k| k.version).collect();
    assert_eq!(versions, vec![winner.version, next.version], "oldest first; the losers stored nothing");
    assert_eq!(keyring.version(Purpose::LlmKey, winner.version).await.unwrap().as_ref(), Some(&winner));

    // A move to another KMS key replaces the wrapping only while it is what was read.
    let moved = WrappedBranchKey {
        key_id: "arn:aws:kms:us-east-1:123456789012:key/new".into(),
        wrapped: vec![5; 184],
        ..next.clone()
    };
    assert!(keyring.rewrapped(&next, &moved, true).await.unwrap());
    assert!(!keyring.rewrapped(&next, &moved, true).await.unwrap(), "already moved");
    assert_eq!(keyring.active(Purpose::LlmKey).await.unwrap().as_ref(), Some(&moved));
    assert_eq!(keyring.version(Purpose::LlmKey, next.version).await.unwrap().as_ref(), Some(&moved));

    assert!(keyring.retire(Purpose::LlmKey, winner.version).await.unwrap());
    assert!(!keyring.retire(Purpose::LlmKey, winner.version).await.unwrap());
    assert!(keyring.version(Purpose::LlmKey, winner.version).await.unwrap().is_none());
}

async fn the_sweep_finds_every_sealed_value_with_its_context(store: &Store) {
    let (alice, bob) = (user("alice"), user("bob"));
    for (who, provider, tag) in
        [(&alice, Provider::OpenAi, 1), (&alice, Provider::Anthropic, 2), (&bob, Provider::OpenAi, 3)]
    {
        let new = NewLlmKey {
            provider,
            sealed: sealed(tag),
            preview: "sk-…".into(),
            status: KeyStatus::Valid,
            test: None,
            zai_region: None,
        };
        keyward_tests::seed_key(store, who, &new, 100).await;
    }
    branch_keys_are_not_sealed_values(store).await;
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.sealed_values().page(after.as_deref(), 2).await.unwrap();
        pages += 1;
        found.extend(page.values);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(pages >= 2, "paged");
    let mut seen: Vec<_> = found.iter().map(|v| (v.key.pk.clone(), v.key.sk.clone(), v.sealed.clone())).collect();
    seen.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(seen.len(), 3, "{seen:?}");
    for value in &found {
        let owner = if value.key.pk.contains("bob") { &bob } else { &alice };
        let provider: Provider = value.key.sk.trim_start_matches("LLMKEY#").parse().unwrap();
        assert_eq!(value.context, keyward::store::llm_key_context(owner, provider));
    }

    // A replacement lands only over the value that was read.
    let value = &found[0];
    assert!(store.sealed_values().replace(value, &sealed(9)).await.unwrap());
    assert!(!store.sealed_values().replace(value, &sealed(8)).await.unwrap(), "changed meanwhile");
    assert!(matches!(store.sealed_values().page(Some("not-a-cursor"), 2).await, Err(StoreError::InvalidCursor)));
}

async fn branch_keys_are_not_sealed_values(store: &Store) {
    store.keyring().create_first(&branch_key(Purpose::LlmKey, 7, 1)).await.unwrap();
}
