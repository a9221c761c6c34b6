//! No secret ever comes back (issue #12): an exporter configured with every kind of secret
//! — bearer token, basic-auth password, canary DSN and token, heartbeat token, queue
//! password — each a distinctive string, and every channel where text comes out: the
//! messages of configs that put a secret in the wrong shape, the `Debug` of the config and
//! of those errors, the landing page, `/metrics`, the answers to a ping and to a reload.
//!
//! [`Channels`] collects what each channel showed and greps all of it at the end; to cover
//! a new channel (log lines at trace level, a redirect's answer), add its text with
//! [`Channels::add`].

use std::collections::HashMap;
use std::path::Path;

use glitchtip_exporter::config::{ConfigError, ConfigSource};

use crate::helpers::{deps, start};

const BEARER: &str = "bearer-SECRET-7f3a91c2";
const BASIC: &str = "basic-SECRET-0b52c4d9";
/// Letters and digits only: a DSN key.
const DSN_KEY: &str = "dsnkeySECRET4d8e17aa";
const CANARY_TOKEN: &str = "canary-SECRET-93ac05e1";
const HEARTBEAT: &str = "heartbeat-SECRET-61f2d8b7";
const QUEUE: &str = "queue-SECRET-c8e0b3f4";
/// A secret of digits only, which TOML and the environment parse as a number.
const NUMERIC: &str = "987654321987654321";

/// Every secret, in every form it could take on the way out.
/// A DSN (holding [`DSN_KEY`]) and a JWT, written where a secret's file path goes: they
/// look like paths (a `/`, a `.`) and must not be shown as one.
const DSN_URL: &str = "https://dsnkeySECRET4d8e17aa@glitchtip.example.com/1";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SECRETjwt9f8e7d6c5b4";

fn secrets() -> Vec<String> {
    use base64::Engine as _;
    let mut all: Vec<String> = [
        BEARER,
        BASIC,
        DSN_KEY,
        CANARY_TOKEN,
        HEARTBEAT,
        QUEUE,
        NUMERIC,
        JWT,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // The Authorization header's value for basic auth.
    all.push(base64::engine::general_purpose::STANDARD.encode(format!("monitor:{BASIC}")));
    all
}

/// What each channel showed, greped for secrets at the end.
#[derive(Default)]
pub struct Channels {
    seen: Vec<(String, String)>,
}

impl Channels {
    /// Records `text` as shown on `channel` (a name for the failure message).
    pub fn add(&mut self, channel: impl Into<String>, text: impl Into<String>) {
        self.seen.push((channel.into(), text.into()));
    }

    /// Every (channel, secret) pair where the secret appears.
    pub fn leaks(&self, secrets: &[String]) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for (channel, text) in &self.seen {
            for secret in secrets {
                if text.contains(secret.as_str()) {
                    found.push((channel.clone(), secret.clone()));
                }
            }
        }
        found
    }

    /// Fails naming every channel that showed a secret.
    pub fn assert_no_secret(&self, secrets: &[String]) {
        let leaks = self.leaks(secrets);
        assert!(
            leaks.is_empty(),
            "secrets shown ({} channels looked at): {leaks:#?}",
            self.seen.len()
        );
    }
}

/// The grep finds what it must: a channel holding a secret is reported.
#[test]
fn channels_report_a_planted_secret() {
    let mut channels = Channels::default();
    channels.add("clean", "nothing here");
    channels.add("planted", format!("Authorization: Bearer {BEARER}"));
    assert_eq!(
        channels.leaks(&secrets()),
        vec![("planted".to_owned(), BEARER.to_owned())]
    );
}

/// Where each secret goes: a config whose `{S}` is the secret's place.
const POSITIONS: &[(&str, &str)] = &[
    (
        "targets.prod.checks.o.bearer_token",
        "[targets.prod]\nurl = \"http://127.0.0.1:9\"\n[targets.prod.checks.o]\npath = \"/o\"\nbearer_token = {S}\n",
    ),
    (
        "targets.prod.checks.o.basic_auth",
        "[targets.prod]\nurl = \"http://127.0.0.1:9\"\n[targets.prod.checks.o]\npath = \"/o\"\nbasic_auth = { username = \"monitor\", password = {S} }\n",
    ),
    (
        "targets.prod.canary.dsn",
        "[targets.prod]\nurl = \"http://127.0.0.1:9\"\n[targets.prod.canary]\ndsn = {S}\ntoken = { file = \"{DIR}/canary-token\" }\norganization = \"acme\"\n",
    ),
    (
        "targets.prod.canary.token",
        "[targets.prod]\nurl = \"http://127.0.0.1:9\"\n[targets.prod.canary]\ndsn = { file = \"{DIR}/dsn\" }\ntoken = {S}\norganization = \"acme\"\n",
    ),
    (
        "heartbeats.worker.token",
        "[heartbeats.worker]\ninterval = \"5m\"\ntoken = {S}\n",
    ),
    (
        "targets.prod.queue.password",
        "[targets.prod]\nurl = \"http://127.0.0.1:9\"\n[targets.prod.queue]\nurl = \"redis://127.0.0.1:9/0\"\npassword = {S}\n",
    ),
];

/// Wrong shapes of a secret, `{V}` standing for its value.
const SHAPES: &[&str] = &[
    "\"{V}\"",
    "{V}",
    "'{V}'",
    "[\"{V}\"]",
    "{ file = \"x\", value = \"{V}\" }",
    "{ {V} = \"x\" }",
    "{ \"{V}\" = \"x\" }",
    "{ env = \"{V}\" }",
    "{ file = \"{V}\" }",
    "{ env = [\"{V}\"] }",
    "{ file = { path = \"{V}\" } }",
    "{ file = \"x\", env = \"{V}\" }",
    "{ value = \"{V}\" }",
];

/// The secret files of the fully configured exporter, in `dir`.
fn write_secret_files(dir: &Path, ingest_port: u16) {
    for (name, value) in [
        ("bearer", BEARER.to_owned()),
        ("basic", BASIC.to_owned()),
        (
            "dsn",
            format!("http://{DSN_KEY}@127.0.0.1:{ingest_port}/1\n"),
        ),
        ("canary-token", format!("{CANARY_TOKEN}\n")),
        ("heartbeat", HEARTBEAT.to_owned()),
        ("queue", QUEUE.to_owned()),
    ] {
        std::fs::write(dir.join(name), value).unwrap();
    }
}

fn load(toml: &str, env: HashMap<String, String>) -> Result<(), ConfigError> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), toml).unwrap();
    ConfigSource {
        file: Some(file.path().to_owned()),
        env: Some(env),
        ..Default::default()
    }
    .load()
    .map(|_| ())
}

/// Every wrong shape in every secret position, from the file and from the environment:
/// refused, with a message that names the key and shows no value.
fn config_errors(dir: &Path, channels: &mut Channels) {
    let dir_text = dir.display().to_string();
    let mut refused = 0;
    for (key, template) in POSITIONS {
        for value in [BEARER, NUMERIC, DSN_URL, JWT] {
            for shape in SHAPES {
                let toml = template
                    .replace("{DIR}", &dir_text)
                    .replace("{S}", &shape.replace("{V}", value));
                let channel = format!("{key} = {shape} with {value}");
                let Err(err) = load(&toml, HashMap::new()) else {
                    panic!("{channel}: accepted");
                };
                let message = err.to_string();
                let first = key.split('.').next_back().unwrap();
                // A bare word that is not a number is a TOML syntax error, which
                // names the line, not the key.
                assert!(
                    message.contains(first) || message.contains("TOML syntax error"),
                    "{channel}: {message}"
                );
                channels.add(format!("{channel}: message"), message);
                channels.add(format!("{channel}: Debug"), format!("{err:?}"));
                refused += 1;
            }
        }
        // The secret itself as an environment override of the key.
        let var = format!(
            "GLITCHTIP_EXPORTER__{}",
            key.to_uppercase().replace('.', "__")
        );
        let (var, toml) = if key.ends_with("basic_auth") {
            (
                format!("{var}__PASSWORD"),
                template.replace("{S}", "{ file = \"x\" }"),
            )
        } else {
            (var, template.replace("{S}", "{ file = \"x\" }"))
        };
        for value in [BEARER, NUMERIC] {
            let env = HashMap::from([(var.clone(), value.to_owned())]);
            let toml = toml.replace("{DIR}", &dir_text);
            let err = load(&toml, env).expect_err(&var);
            channels.add(format!("{var}={value}: message"), err.to_string());
            channels.add(format!("{var}={value}: Debug"), format!("{err:?}"));
            refused += 1;
        }
    }
    assert_eq!(refused, POSITIONS.len() * (4 * SHAPES.len() + 2));
}

/// The environment a config is loaded with may hold secrets: `Debug` shows the names only.
#[test]
fn config_source_debug_shows_no_environment_value() {
    let source = ConfigSource {
        env: Some(HashMap::from([(
            "QUEUE_PASSWORD".to_owned(),
            QUEUE.to_owned(),
        )])),
        ..Default::default()
    };
    let shown = format!("{source:?}");
    assert!(shown.contains("QUEUE_PASSWORD"), "{shown}");
    let mut channels = Channels::default();
    channels.add("Debug of the config source", shown);
    channels.assert_no_secret(&secrets());
}

/// The test resolver knows nothing but loopback; every target here is a closed port, so
/// the probes fail fast and the pages show their failures.
fn full_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[server]\nstate_file = \"{d}/state.json\"\n\
         [targets.prod]\nurl = \"http://127.0.0.1:9\"\ndefault_checks = false\n\
         [targets.prod.checks.organizations]\npath = \"/api/0/organizations/\"\nbearer_token = {{ file = \"{d}/bearer\" }}\n\
         [targets.prod.checks.basic]\npath = \"/basic\"\nbasic_auth = {{ username = \"monitor\", password = {{ file = \"{d}/basic\" }} }}\n\
         [targets.prod.canary]\ndsn = {{ file = \"{d}/dsn\" }}\ntoken = {{ file = \"{d}/canary-token\" }}\norganization = \"acme\"\n\
         [targets.prod.queue]\nurl = \"redis://127.0.0.1:9/0\"\npassword = {{ file = \"{d}/queue\" }}\n\
         [heartbeats.worker]\ninterval = \"5m\"\ntoken = {{ file = \"{d}/heartbeat\" }}\n"
    )
}

#[tokio::test]
async fn no_secret_in_messages_debug_pages_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    write_secret_files(dir.path(), 9);
    let mut channels = Channels::default();

    config_errors(dir.path(), &mut channels);

    let toml = full_config(dir.path());
    let (deps, _clock) = deps();
    let exporter = start(&toml, deps).await;
    let config = exporter.exporter.config();
    // Every secret was read: the config holds all six kinds.
    assert!(config.checks().any(|c| c.is_canary()));
    assert!(config.targets[0].queue.is_some());
    assert_eq!(config.heartbeats.len(), 1);
    channels.add("Debug of the config", format!("{config:?}"));
    channels.add("Debug of the config, pretty", format!("{config:#?}"));

    let ping = exporter
        .get(&format!("/heartbeat/worker?token={HEARTBEAT}"))
        .await;
    assert!(ping.status < 300, "{ping:?}");
    channels.add("ping answer", format!("{ping:?}"));
    let wrong = exporter.get("/heartbeat/worker?token=nope").await;
    channels.add("wrong ping answer", format!("{wrong:?}"));
    for path in ["/", "/metrics", "/-/ready", "/-/healthy"] {
        let r = exporter.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        channels.add(format!("GET {path}"), format!("{r:?}"));
    }

    // A reload that puts a secret inline: refused, and the answer does not repeat it.
    let inline = toml.replace(
        &format!("{{ file = \"{}/bearer\" }}", dir.path().display()),
        &format!("\"{BEARER}\""),
    );
    assert_ne!(inline, toml);
    let r = exporter.reload(&inline).await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("bearer_token"), "{}", r.body);
    channels.add("reload answer", format!("{r:?}"));

    exporter.stop().await;
    channels.assert_no_secret(&secrets());
}

/// A proxy or target URL with a password in it, refused for another reason: the password
/// is not repeated either.
#[test]
fn no_password_of_a_refused_url_in_messages() {
    let mut channels = Channels::default();
    for toml in [
        format!(
            "[targets.prod]\nurl = \"http://127.0.0.1:9\"\nproxy = \"https://monitor:{BASIC}@proxy.example:3128\"\n"
        ),
        format!("[targets.prod]\nurl = \"ftp://monitor:{BASIC}@glitchtip.example\"\n"),
        format!("[targets.prod]\nurl = \"http://monitor:{BASIC}@glitchtip.example\"\n"),
        format!("[targets.prod]\nurl = \"not a url {BASIC}@x?token={BEARER}\"\n"),
        format!(
            "[targets.prod]\nurl = \"http://127.0.0.1:9\"\n[targets.prod.checks.o]\nurl = \"ftp://g.example/?token={BEARER}\"\n"
        ),
    ] {
        let err = load(&toml, HashMap::new()).expect_err(&toml);
        assert!(err.to_string().contains("url") || err.to_string().contains("proxy"));
        channels.add(toml, err.to_string());
    }
    channels.assert_no_secret(&secrets());
}

/// Regression (issue #12): three reloads reading a FIFO froze the whole server, since
/// reads ran on the async workers. Each is now refused at once, and the server answers.
#[tokio::test]
async fn reloads_naming_a_fifo_are_refused_and_the_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path(), "token-fifo");
    let good = "[targets.prod]\nurl = \"http://127.0.0.1:9\"\ndefault_checks = false\n\
                [targets.prod.checks.o]\npath = \"/o\"\n";
    let (deps, _clock) = deps();
    let exporter = start(good, deps).await;
    let with_fifo = format!("{good}bearer_token = {{ file = \"{}\" }}\n", fifo.display());
    for _ in 0..3 {
        let r = exporter.reload(&with_fifo).await;
        assert_eq!(r.status, 500);
        assert!(
            r.body.contains("not a regular file but a FIFO"),
            "{}",
            r.body
        );
    }
    assert_eq!(exporter.get("/").await.status, 200);
    exporter.stop().await;
}

/// A FIFO called `name` in `dir`, which nothing will ever write to.
pub fn mkfifo(dir: &Path, name: &str) -> std::path::PathBuf {
    let fifo = dir.join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    fifo
}
