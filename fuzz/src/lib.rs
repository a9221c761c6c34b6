//! What the fuzz targets share: a scratch folder, a config loaded from TOML text exactly as
//! `--check-config` loads it, and an exporter started on paused tokio time with a prober and
//! a resolver that never touch the network.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use glitchtip_exporter::checks::{CheckSpec, Outcome, Prober, Reason, Trace};
use glitchtip_exporter::clock::Clock;
use glitchtip_exporter::config::{Config, ConfigError, ConfigSource};
use glitchtip_exporter::exporter::{Deps, Exporter};
use glitchtip_exporter::net::resolver::Resolver;
use tokio::sync::Notify;

/// The wall-clock time every target starts at: 2026-01-01 00:00:00 UTC.
pub const START_UNIX: u64 = 1_767_225_600;

/// Environment the configs are loaded with: secrets given as `{ env = "..." }`.
pub const ENV: [(&str, &str); 3] = [
    ("FUZZ_TOKEN", "fuzz-token-0123456789"),
    ("FUZZ_PASSWORD", "fuzz-password-0123456789"),
    (
        "FUZZ_DSN",
        "http://0123456789abcdef@glitchtip.fuzz.invalid/1",
    ),
];

/// The secret file `{ file = "secret" }` finds next to the config file.
pub const SECRET_FILE_TEXT: &str = "fuzz-file-secret-0123456789\n";

/// A scratch folder for one fuzzing process (config file, secret file, state file): under
/// `FUZZ_SCRATCH` when set (scripts/fuzz.sh sets it and removes it afterwards), else a
/// temporary folder (libFuzzer ends the process with `exit`, so it stays behind).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("FUZZ_SCRATCH") {
            Some(base) => {
                let dir = Path::new(&base).join(std::process::id().to_string());
                std::fs::create_dir_all(&dir).expect("the scratch folder");
                dir
            }
            None => tempfile::tempdir().expect("a scratch folder").keep(),
        };
        std::fs::write(dir.join("secret"), SECRET_FILE_TEXT).expect("the secret file");
        dir
    })
}

/// Loads `text` as the config file, with [`ENV`] as the environment: exactly what
/// `glitchtip-exporter --check-config --config FILE` does.
pub fn load_config(text: &str, file_name: &str) -> (ConfigSource, Result<Config, ConfigError>) {
    let path = scratch().join(file_name);
    std::fs::write(&path, text).expect("the config file");
    let source = ConfigSource {
        file: Some(path),
        env: Some(
            ENV.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        ),
        ..ConfigSource::default()
    };
    let loaded = source.load();
    (source, loaded)
}

/// Counts the work done for the network (probes and name look-ups) and wakes the waiting
/// target once the budget is spent, so that a check with a 1 ms interval cannot keep a run
/// going for ever.
pub struct Budget {
    left: AtomicUsize,
    spent: Notify,
}

impl Budget {
    /// A budget of `n` probes and look-ups.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(n),
            spent: Notify::new(),
        })
    }

    fn take(&self) {
        let before = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) || before.is_err() {
            self.spent.notify_one();
        }
    }

    /// Completes once the budget is spent.
    pub async fn spent(&self) {
        self.spent.notified().await
    }
}

/// A prober that answers at once (or after the whole deadline, as a timeout), cycling
/// through success, failure and timeout so that the retry path of the scheduler runs too.
pub struct FakeProber {
    budget: Arc<Budget>,
    n: AtomicUsize,
}

impl FakeProber {
    /// A prober drawing on `budget`.
    pub fn new(budget: Arc<Budget>) -> Arc<Self> {
        Arc::new(Self {
            budget,
            n: AtomicUsize::new(0),
        })
    }
}

impl Prober for FakeProber {
    fn probe<'a>(&'a self, _spec: &'a CheckSpec, deadline: Duration) -> BoxFuture<'a, Outcome> {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        self.budget.take();
        Box::pin(async move {
            let (reason, status, version) = match n % 3 {
                0 => (Reason::None, Some(200), Some("6.0.0".to_owned())),
                1 => (Reason::Connect, None, None),
                _ => {
                    tokio::time::sleep(deadline).await;
                    (Reason::Timeout, None, None)
                }
            };
            Outcome {
                reason,
                status,
                duration: Duration::from_millis(3),
                trace: Trace::default(),
                body_match: None,
                version,
                detail: None,
                tls: None,
            }
        })
    }
}

/// A resolver for which every name fails ("not found"), drawing on the budget.
pub struct NoNames(pub Arc<Budget>);

impl Resolver for NoNames {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.0.take();
        Box::pin(async { Err(io::Error::new(io::ErrorKind::NotFound, "name not found")) })
    }
}

/// Wall-clock time that moves with tokio's (paused) clock from [`START_UNIX`].
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts now (tokio time).
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(START_UNIX) + self.start.elapsed()
    }
}

/// A current-thread runtime on paused time: sleeps end at once when nothing else can run.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
}

/// Builds the exporter around `config` with [`FakeProber`], [`NoNames`] and [`TokioClock`].
/// The state file goes to the scratch folder (never where the fuzzed config says) and
/// every queue is pointed at a name, so that no reader ever dials an address.
/// Must run inside a runtime.
pub fn exporter_offline(
    source: ConfigSource,
    mut config: Config,
    state_file: PathBuf,
    budget: Arc<Budget>,
) -> Arc<Exporter> {
    let _ = std::fs::remove_file(&state_file);
    config.state_file = state_file;
    for target in &mut config.targets {
        if let Some(queue) = &mut target.queue {
            let spec = Arc::make_mut(queue);
            spec.host = "queue.fuzz.invalid".to_owned();
            spec.tls = None;
        }
    }
    let deps = Deps {
        resolver: Arc::new(NoNames(budget.clone())),
        clock: TokioClock::new(),
        prober: Some(FakeProber::new(budget)),
    };
    Exporter::with_config(source, config, deps)
}

/// Certificates made for the x509 target: a CA to trust, and seed inputs that use it.
pub struct X509Seeds {
    /// The CA certificate, PEM, for the `ca_file`.
    pub ca_pem: String,
    /// `(file name, input)`: the target's input format (one choice byte, then
    /// length-prefixed DER certificates).
    pub inputs: Vec<(String, Vec<u8>)>,
}

/// Makes a CA, an intermediate and a few leaves (valid, expired, not yet valid, self-signed,
/// for another name) with rcgen, valid around [`START_UNIX`].
pub fn x509_seeds() -> X509Seeds {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    const DAY: u64 = 24 * 3600;
    let params = |cn: &str, sans: &[&str], from_day: i64, to_day: i64, ca: bool| {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("certificate parameters");
        p.distinguished_name.push(DnType::CommonName, cn);
        let at = |day: i64| {
            rcgen::date_time_ymd(1970, 1, 1)
                + Duration::from_secs(START_UNIX.saturating_add_signed(day * DAY as i64))
        };
        p.not_before = at(from_day);
        p.not_after = at(to_day);
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        p
    };
    let ca_key = KeyPair::generate().expect("a key");
    let ca_params = params("fuzz root", &[], -1000, 1000, true);
    let ca = ca_params.self_signed(&ca_key).expect("the CA");
    let root = Issuer::new(ca_params, ca_key);
    let int_key = KeyPair::generate().expect("a key");
    let int_params = params("fuzz intermediate", &[], -500, 500, true);
    let int = int_params
        .signed_by(&int_key, &root)
        .expect("the intermediate");
    let intermediate = Issuer::new(int_params, int_key);
    let leaf = |sans: &[&str], from: i64, to: i64| {
        let key = KeyPair::generate().expect("a key");
        params(sans[0], sans, from, to, false)
            .signed_by(&key, &intermediate)
            .expect("a leaf")
            .der()
            .to_vec()
    };
    let self_signed = {
        let key = KeyPair::generate().expect("a key");
        params(
            "glitchtip.fuzz.test",
            &["glitchtip.fuzz.test"],
            -10,
            10,
            false,
        )
        .self_signed(&key)
        .expect("a self-signed leaf")
        .der()
        .to_vec()
    };
    let name = ["glitchtip.fuzz.test", "127.0.0.1"];
    let encode = |choice: u8, chain: &[&[u8]]| {
        let mut out = vec![choice];
        for der in chain {
            out.extend_from_slice(&u16::try_from(der.len()).expect("small").to_be_bytes());
            out.extend_from_slice(der);
        }
        out
    };
    let valid = leaf(&name, -10, 90);
    let expired = leaf(&name, -100, -1);
    let future = leaf(&name, 1, 90);
    let other = leaf(&["other.fuzz.test"], -10, 90);
    let ca_pem = ca.pem();
    let (int, ca) = (int.der().to_vec(), ca.der().to_vec());
    X509Seeds {
        ca_pem,
        inputs: vec![
            ("rcgen-valid".to_owned(), encode(0, &[&valid, &int])),
            ("rcgen-valid-ip".to_owned(), encode(2, &[&valid, &int, &ca])),
            ("rcgen-no-intermediate".to_owned(), encode(0, &[&valid])),
            ("rcgen-expired".to_owned(), encode(0, &[&expired, &int])),
            (
                "rcgen-not-yet-valid".to_owned(),
                encode(0, &[&future, &int]),
            ),
            ("rcgen-other-name".to_owned(), encode(0, &[&other, &int])),
            ("rcgen-self-signed".to_owned(), encode(0, &[&self_signed])),
            ("rcgen-at-epoch".to_owned(), encode(4, &[&valid, &int])),
            ("rcgen-year-9999".to_owned(), encode(12, &[&valid, &int])),
        ],
    }
}

/// Panics unless `text` is valid Prometheus text exposition format: comments, and
/// `name{label="value",...} number` lines with escaped label values.
pub fn assert_exposition(text: &[u8]) {
    let text = std::str::from_utf8(text).expect("UTF-8 exposition text");
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        assert!(name_end > 0, "no metric name: {line:?}");
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            let mut chars = labels.char_indices();
            loop {
                // label name
                let mut saw_name = false;
                let mut next = None;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        next = Some(i);
                        break;
                    }
                    if c == '}' && !saw_name {
                        next = Some(i);
                        break;
                    }
                    assert!(
                        c.is_ascii_alphanumeric() || c == '_',
                        "label name in {line:?}"
                    );
                    saw_name = true;
                }
                let i = next.unwrap_or_else(|| panic!("unterminated labels: {line:?}"));
                if labels[i..].starts_with('}') {
                    rest = &labels[i + 1..];
                    break;
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            let escaped = chars.next().map(|(_, c)| c);
                            assert!(matches!(escaped, Some('\\' | '"' | 'n')), "{line:?}");
                        }
                        Some((_, '"')) => break,
                        Some(_) => {}
                        None => panic!("unterminated label value: {line:?}"),
                    }
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        rest = &labels[i + 1..];
                        break;
                    }
                    other => panic!("after a label value {other:?}: {line:?}"),
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value = value.split(' ').next().unwrap_or_default();
        assert!(
            value.parse::<f64>().is_ok() || matches!(value, "+Inf" | "-Inf" | "NaN"),
            "value {value:?} in {line:?}"
        );
    }
}
