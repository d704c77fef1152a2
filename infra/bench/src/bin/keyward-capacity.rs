//! The capacity model (`scripts/capacity`): keyward's real use cases, envelope and store code, run
//! in-process through simulated Lambda instances, each with its own key cache and clock, with every
//! AWS call counted — KMS calls at the key provider, DynamoDB calls and their capacity units at the
//! table. Internal key fetches (`internal-keys`) and key writes (`llm-keys`, validated against the
//! sandbox's provider stand-in) come at the given rates, users drawn from a Zipf popularity.
//!
//! Instances are exchangeable (a load balancer spreads requests evenly), so the model runs a
//! sample of each function's instances at the per-instance rate for the whole window and scales
//! the counts by instances / sample. Audit entries are counted, not kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keyward::auth::UserCaller;
use keyward::auth::service::InternalPrincipals;
use keyward::crypto::{CountingKeyProvider, Envelope, LocalKeyProvider, SealFormat};
use keyward::model::{Clock, ManualClock, Provider, UserId};
use keyward::outbound::Outbound;
use keyward::providers::{KeyValidator, ProviderEndpoints, preview};
use keyward::secret::{ApiKey, DataKey};
use keyward::store::table::{Changes, Condition, Cursor, Item, Key, Page, Query, Table, Write};
use keyward::store::{KeyStatus, MemoryTable, NewLlmKey, Store, StoreError, llm_key_context};
use keyward::use_cases::keys::Keys;
use keyward_sandbox::providers::{Provider as StandIn, Scenario, magic_key};
use secrecy::SecretString;

/// List prices used for the monthly figures (us-east-1; stated in docs/capacity.md with their date).
const KMS_PER_MILLION: f64 = 3.00;
const DYNAMODB_WRITE_UNITS_PER_MILLION: f64 = 0.625;
const DYNAMODB_READ_UNITS_PER_MILLION: f64 = 0.125;
const SECONDS_PER_MONTH: f64 = 730.0 * 3600.0;

struct Args {
    fetches: Vec<f64>,
    writes: f64,
    users: usize,
    zipf: f64,
    seconds: u64,
    ttl: u64,
    fetch_ms: f64,
    write_ms: f64,
    sample: usize,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = Self {
            fetches: vec![1_000.0, 10_000.0, 100_000.0],
            writes: 1_000.0,
            users: 100_000,
            zipf: 1.1,
            seconds: 900,
            ttl: 300,
            fetch_ms: 15.0,
            write_ms: 400.0,
            sample: 24,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |v: String| v.parse::<f64>().map_err(|_| format!("{flag}: `{v}` is not a number"));
            match flag.as_str() {
                "--fetches" => {
                    args.fetches = value()?.split(',').map(|v| number(v.to_owned())).collect::<Result<_, _>>()?
                }
                "--writes" => args.writes = number(value()?)?,
                "--users" => args.users = number(value()?)? as usize,
                "--zipf" => args.zipf = number(value()?)?,
                "--seconds" => args.seconds = number(value()?)? as u64,
                "--ttl" => args.ttl = number(value()?)? as u64,
                "--fetch-ms" => args.fetch_ms = number(value()?)?,
                "--write-ms" => args.write_ms = number(value()?)?,
                "--sample" => args.sample = (number(value()?)? as usize).max(1),
                "--help" | "-h" => {
                    return Err("keyward-capacity [--fetches 1000,10000,100000] [--writes 1000] [--users 100000] \
                                [--zipf 1.1 (0: uniform)] [--seconds 900] [--ttl 300] [--fetch-ms 15] \
                                [--write-ms 400] [--sample 24]"
                        .into());
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(args)
    }
}

/// Users by popularity: `draw` maps a uniform number in [0, 1) to a user index.
struct Popularity(Vec<f64>);

impl Popularity {
    fn zipf(users: usize, exponent: f64) -> Self {
        let weights: Vec<f64> = (1..=users).map(|rank| (rank as f64).powf(-exponent)).collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        Self(
            weights
                .iter()
                .map(|w| {
                    sum += w / total;
                    sum
                })
                .collect(),
        )
    }

    fn draw(&self, uniform: f64) -> usize {
        self.0.partition_point(|&c| c < uniform).min(self.0.len() - 1)
    }

    fn share_of_top(&self) -> f64 {
        self.0[0]
    }
}

/// DynamoDB as billed: requests per operation, read and write units, and writes per partition.
#[derive(Default)]
struct Usage {
    requests: BTreeMap<&'static str, u64>,
    read_units: f64,
    write_units: f64,
    /// Writes per partition key as stored, and per user for the audit (one partition per user
    /// before the audit was sharded).
    partition_writes: HashMap<String, u64>,
    unsharded_audit_writes: HashMap<String, u64>,
    /// Read units per partition key.
    partition_reads: HashMap<String, f64>,
}

struct CountingTable {
    inner: MemoryTable,
    usage: Mutex<Usage>,
}

/// Whole 1 KB write units and 4 KB read units, as DynamoDB rounds them.
fn item_size(item: &Item) -> usize {
    serde_json::to_vec(item).map(|v| v.len()).unwrap_or(0)
}

impl CountingTable {
    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn request(&self, operation: &'static str) {
        *self.usage().requests.entry(operation).or_default() += 1;
    }

    /// A strongly consistent read: one unit per 4 KB, each item rounded up (a miss costs one).
    fn read(&self, keys: &[Key], items: &[Item]) {
        let mut usage = self.usage();
        let mut total = 0.0;
        for key in keys {
            let item = items.iter().find(|i| i.key().is_ok_and(|k| k == *key));
            let units = item.map_or(1, |i| item_size(i).div_ceil(4096).max(1)) as f64;
            *usage.partition_reads.entry(key.pk.clone()).or_default() += units;
            total += units;
        }
        usage.read_units += total;
    }

    fn wrote(&self, pk: &str, bytes: usize, transactional: bool) {
        let mut usage = self.usage();
        let units = bytes.div_ceil(1024).max(1) as f64;
        usage.write_units += if transactional { 2.0 * units } else { units };
        *usage.partition_writes.entry(pk.to_owned()).or_default() += 1;
        if let Some(rest) = pk.strip_prefix("AUDIT#") {
            let user = rest.rsplit_once('#').map_or(rest, |(user, _)| user).to_owned();
            *usage.unsharded_audit_writes.entry(user).or_default() += 1;
        }
    }
}

#[async_trait]
impl Table for CountingTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.request("GetItem");
        let item = self.inner.get(key).await?;
        self.read(std::slice::from_ref(key), item.as_slice());
        Ok(item)
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        // As the DynamoDB adapter sends it: one key is a GetItem.
        self.request(if keys.len() == 1 { "GetItem" } else { "BatchGetItem" });
        let items = self.inner.get_many(keys).await?;
        self.read(keys, &items);
        Ok(items)
    }
    async fn put(&self, item: Item, when: Option<Condition>) -> Result<(), StoreError> {
        self.request("PutItem");
        let key = item.key()?;
        self.wrote(&key.pk, item_size(&item), false);
        if key.pk.starts_with("AUDIT#") {
            return Ok(());
        }
        self.inner.put(item, when).await
    }
    async fn update(&self, key: &Key, changes: Changes, when: Option<Condition>) -> Result<Item, StoreError> {
        self.request("UpdateItem");
        let item = self.inner.update(key, changes, when).await;
        self.wrote(&key.pk, item.as_ref().map(item_size).unwrap_or(0), false);
        item
    }
    async fn delete(&self, key: &Key, when: Option<Condition>) -> Result<Option<Item>, StoreError> {
        self.request("DeleteItem");
        self.wrote(&key.pk, 0, false);
        self.inner.delete(key, when).await
    }
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.request("Query");
        let page = self.inner.query(query).await?;
        let bytes: usize = page.items.iter().map(item_size).sum();
        self.usage().read_units += bytes.div_ceil(4096).max(1) as f64;
        Ok(page)
    }
    async fn scan(&self, after: Option<&Cursor>, limit: u32) -> Result<Page, StoreError> {
        self.request("Scan");
        self.inner.scan(after, limit).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.request("TransactWriteItems");
        for write in &writes {
            let bytes = match write {
                Write::Put { item, .. } => item_size(item),
                _ => 512,
            };
            self.wrote(&write.key()?.pk, bytes, true);
        }
        let kept: Vec<Write> =
            writes.into_iter().filter(|w| w.key().is_ok_and(|k| !k.pk.starts_with("AUDIT#"))).collect();
        if kept.is_empty() {
            return Ok(());
        }
        self.inner.transact(kept).await
    }
    fn backend(&self) -> &'static str {
        "counting"
    }
}

/// One design's figures, per second of the window, for the whole fleet.
struct Figures {
    design: &'static str,
    fetches: f64,
    writes: f64,
    fetch_instances: usize,
    write_instances: usize,
    kms: f64,
    requests: BTreeMap<&'static str, f64>,
    read_units: f64,
    write_units: f64,
    peak_partition: (String, f64),
    peak_read_partition: (String, f64),
    peak_unsharded_audit: f64,
}

impl Figures {
    fn monthly(&self) -> (f64, f64) {
        let kms = self.kms * SECONDS_PER_MONTH / 1e6 * KMS_PER_MILLION;
        let dynamodb = (self.write_units * DYNAMODB_WRITE_UNITS_PER_MILLION
            + self.read_units * DYNAMODB_READ_UNITS_PER_MILLION)
            * SECONDS_PER_MONTH
            / 1e6;
        (kms, dynamodb)
    }
}

struct Model<'a> {
    args: &'a Args,
    popularity: &'a Popularity,
    endpoints: &'a ProviderEndpoints,
    users: Vec<UserId>,
}

/// A deterministic uniform stream (splitmix64), so every run of the model is the same.
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

const START: i64 = 1_800_000_000;

impl Model<'_> {
    async fn run(&self, fetches: f64, format: SealFormat) -> Figures {
        let args = self.args;
        let table = Arc::new(CountingTable { inner: MemoryTable::default(), usage: Mutex::default() });
        let store = Store::new(table.clone());
        let provider = Arc::new(CountingKeyProvider::new(LocalKeyProvider::from_master(DataKey::random())));
        let instance = |clock: Arc<ManualClock>| {
            Envelope::new(provider.clone(), Arc::new(store.clone()), Duration::from_secs(args.ttl), clock)
                .writing(format)
        };
        let validator = KeyValidator::new(Outbound::new(), self.endpoints.clone(), Duration::from_secs(5));

        // Every user has an OpenAI key, sealed in the design's format by a seeding instance.
        let seed_clock = Arc::new(ManualClock::at(START - 1));
        let seeder = instance(seed_clock.clone());
        let plaintext = magic_key(StandIn::OpenAi, Scenario::Valid);
        for user in &self.users {
            let new = NewLlmKey {
                provider: Provider::OpenAi,
                sealed: seeder
                    .seal(plaintext.as_bytes(), &llm_key_context(user, Provider::OpenAi))
                    .await
                    .expect("seal"),
                preview: preview(&ApiKey::new(&plaintext)),
                status: KeyStatus::Valid,
                test: None,
                zai_region: None,
            };
            let entry = keyward::store::AuditEntry {
                at: START - 1,
                actor: keyward::store::Actor::System,
                action: keyward::store::AuditAction::LlmKeyPut,
                target: Some("openai".into()),
                outcome: "seeded".into(),
            };
            store.llm_keys().put_audited(user, &new, START - 1, &entry).await.expect("seed a key");
        }
        *table.usage() = Usage::default();
        provider.take_calls();

        let arn = "arn:aws:iam::123456789012:role/notes-service".to_owned();
        let principals = InternalPrincipals::from_json(&format!(r#"{{"{arn}": ["openai"]}}"#)).expect("principals");
        let caller = principals.caller_named(arn).expect("caller");
        let fetch_instances = ((fetches * args.fetch_ms / 1000.0).ceil() as usize).max(1);
        let write_instances = ((args.writes * args.write_ms / 1000.0).ceil() as usize).max(1);
        let mut uniform = Uniform(0x006b_6579_7761_7264);
        let window = args.seconds as f64;
        // Per function: its KMS calls and DynamoDB usage, scaled from its sample to its fleet.
        let mut kms = 0.0;
        let mut requests: BTreeMap<&'static str, f64> = BTreeMap::new();
        let (mut read_units, mut write_units) = (0.0, 0.0);
        let mut partition_writes: HashMap<String, f64> = HashMap::new();
        let mut audit_writes: HashMap<String, f64> = HashMap::new();
        let mut partition_reads: HashMap<String, f64> = HashMap::new();
        for (fetching, instances, rate) in [(true, fetch_instances, fetches), (false, write_instances, args.writes)] {
            if rate <= 0.0 {
                continue;
            }
            let sample = instances.min(args.sample);
            let per_instance = rate / instances as f64;
            let spacing_ms = 1000.0 / per_instance;
            for _ in 0..sample {
                let clock = Arc::new(ManualClock::at(START));
                let envelope = instance(clock.clone());
                let keys = Keys {
                    store: &store,
                    envelope: &envelope,
                    validator: &validator,
                    validations_per_hour: u32::MAX,
                    clock: clock.as_ref() as &dyn Clock,
                };
                // A random phase, so the sampled instances do not start in step.
                let mut at = uniform.next() * spacing_ms;
                clock.advance_millis(at as i64);
                while at < window * 1000.0 {
                    let user = &self.users[self.popularity.draw(uniform.next())];
                    if fetching {
                        keys.fetch_for(&caller, user, Some([Provider::OpenAi].into())).await.expect("fetch");
                    } else {
                        let signed_in = UserCaller::signed_in(user.clone(), None, Some(true));
                        keys.store_key(&signed_in, Provider::OpenAi, &SecretString::from(plaintext.clone()), None)
                            .await
                            .expect("store");
                    }
                    // Poisson arrivals at the instance's rate, on the instance's own clock.
                    let gap = -spacing_ms * (1.0 - uniform.next()).ln();
                    let before = at as i64;
                    at += gap;
                    clock.advance_millis(at as i64 - before);
                }
            }
            let per_second = instances as f64 / sample as f64 / window;
            kms += provider.take_calls() as f64 * per_second;
            let usage = std::mem::take(&mut *table.usage());
            for (op, n) in usage.requests {
                *requests.entry(op).or_default() += n as f64 * per_second;
            }
            read_units += usage.read_units * per_second;
            write_units += usage.write_units * per_second;
            for (pk, n) in usage.partition_writes {
                *partition_writes.entry(pk).or_default() += n as f64 * per_second;
            }
            for (pk, n) in usage.partition_reads {
                *partition_reads.entry(pk).or_default() += n * per_second;
            }
            for (user, n) in usage.unsharded_audit_writes {
                *audit_writes.entry(user).or_default() += n as f64 * per_second;
            }
        }
        let busiest =
            |map: HashMap<String, f64>| map.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or_default();
        Figures {
            design: match format {
                SealFormat::DataKeyPerRecord => "data key per record (before)",
                SealFormat::BranchKeys => "branch keys (now)",
            },
            fetches,
            writes: args.writes,
            fetch_instances,
            write_instances,
            kms,
            requests,
            read_units,
            write_units,
            peak_partition: busiest(partition_writes),
            peak_read_partition: busiest(partition_reads),
            peak_unsharded_audit: busiest(audit_writes).1,
        }
    }
}

fn print(figures: &[Figures], args: &Args, popularity: &Popularity) {
    println!(
        "Model: {} users, popularity {}, {} s window, key cache TTL {} s; instances = rate × {} ms (fetch) and \
         × {} ms (write), {} instance(s) of each simulated and scaled up.",
        args.users,
        if args.zipf > 0.0 { format!("Zipf({})", args.zipf) } else { "uniform".into() },
        args.seconds,
        args.ttl,
        args.fetch_ms,
        args.write_ms,
        args.sample
    );
    println!(
        "The most popular user makes {:.1}% of the fetches. Prices: KMS ${KMS_PER_MILLION:.2} per million requests; \
         DynamoDB on-demand ${DYNAMODB_WRITE_UNITS_PER_MILLION} per million write units, \
         ${DYNAMODB_READ_UNITS_PER_MILLION} per million read units (us-east-1 list prices, docs/capacity.md).",
        popularity.share_of_top() * 100.0
    );
    println!();
    println!(
        "| design | fetches/s | writes/s | instances (fetch + write) | KMS calls/s | DynamoDB requests/s | read units/s | \
         write units/s | peak read units/s on one partition | peak writes/s on one partition | busiest user's audit \
         writes/s, unsharded | KMS $/month | DynamoDB $/month |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        let (kms_cost, dynamodb_cost) = f.monthly();
        let requests: Vec<String> = f.requests.iter().map(|(op, n)| format!("{op} {n:.0}")).collect();
        // The partition's kind and user, with the user id's `|` escaped for the Markdown table.
        let short = |pk: &str| pk.split('#').take(2).collect::<Vec<_>>().join("#").replace('|', "\\|");
        let (read_at, write_at) = (short(&f.peak_read_partition.0), short(&f.peak_partition.0));
        println!(
            "| {} | {:.0} | {:.0} | {} + {} | {:.1} | {} | {:.0} | {:.0} | {:.0} (`{read_at}`) | {:.0} (`{write_at}`) | \
             {:.0} | {:.0} | {:.0} |",
            f.design,
            f.fetches,
            f.writes,
            f.fetch_instances,
            f.write_instances,
            f.kms,
            requests.join(", "),
            f.read_units,
            f.write_units,
            f.peak_read_partition.1,
            f.peak_partition.1,
            f.peak_unsharded_audit,
            kms_cost,
            dynamodb_cost,
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let sandbox = keyward_sandbox::Sandbox::start_with(
        ([127, 0, 0, 1], 0).into(),
        keyward_sandbox::auth0::DeviceTimings::default(),
    )
    .await
    .expect("the provider stand-ins");
    let base = sandbox.base_url().to_owned();
    let endpoints =
        ProviderEndpoints::build(|s| url::Url::parse(&format!("{base}{}", s.sandbox_path))).expect("endpoints");
    let popularity = Popularity::zipf(args.users, args.zipf.max(0.0));
    let users = (0..args.users).map(|i| UserId::parse(&format!("auth0|capacity{i:07}")).expect("user id")).collect();
    let model = Model { args: &args, popularity: &popularity, endpoints: &endpoints, users };
    let mut figures = Vec::new();
    for &fetches in &args.fetches {
        for format in [SealFormat::DataKeyPerRecord, SealFormat::BranchKeys] {
            let started = std::time::Instant::now();
            figures.push(model.run(fetches, format).await);
            eprintln!("{fetches} fetches/s, {format:?}: simulated in {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    print(&figures, &args, &popularity);
}
