//! What a reload compares: a hash of every input that defines a check (or a queue
//! reader), so that a reload restarts exactly those that changed and the others keep their
//! state. Written once here so that every builder hashes the same way, secrets included.

use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState};
use std::sync::OnceLock;

/// The hash key, random per process: fingerprints are only compared within one process
/// (across reloads), and a fingerprint that mixes in a secret must not be a fixed function
/// of it that could be tried offline, should one ever be shown.
static KEY: OnceLock<RandomState> = OnceLock::new();

/// A config fingerprint under construction: every builder adds what defines its check,
/// then stores [`Fingerprint::finish`] in the spec.
///
/// Not `Debug` or `Clone`: it has taken in secrets.
pub(crate) struct Fingerprint(DefaultHasher);

impl Default for Fingerprint {
    fn default() -> Self {
        Self(KEY.get_or_init(RandomState::new).build_hasher())
    }
}

impl Fingerprint {
    /// Adds a part of the config (a raw table, names, the schedule, …).
    pub(crate) fn add(&mut self, part: &impl Hash) -> &mut Self {
        part.hash(&mut self.0);
        self
    }

    /// Adds a secret read for the check, so that a changed token or password restarts it.
    /// The secret goes into the hash only: it is neither kept nor shown.
    pub(crate) fn secret(&mut self, secret: &str) -> &mut Self {
        secret.hash(&mut self.0);
        self
    }

    /// The fingerprint of everything added.
    pub(crate) fn finish(&self) -> u64 {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::ConfigSource;

    /// Every builder that reads a secret reads `SECRET`: the bearer token of `health`, the
    /// basic-auth password of `api`, the canary's API token, the queue's password.
    const CONFIG: &str = r#"
[targets.p]
url = "https://glitchtip.example.com"
[targets.p.checks.health]
bearer_token = { env = "SECRET" }
[targets.p.checks.api]
basic_auth = { username = "u", password = { env = "SECRET" } }
[targets.p.canary]
dsn = { env = "DSN" }
token = { env = "SECRET" }
organization = "org"
[targets.p.queue]
url = "redis://127.0.0.1:6379/0"
password = { env = "SECRET" }
"#;

    /// Each check's and the queue's fingerprint, by name, with `secret` in `SECRET`.
    fn fingerprints(secret: &str) -> Vec<(String, u64)> {
        let dir = tempfile::tempdir().unwrap();
        fingerprints_in(dir.path(), CONFIG, secret)
    }

    /// As [`fingerprints`], for `config` written into `dir`.
    fn fingerprints_in(dir: &std::path::Path, config: &str, secret: &str) -> Vec<(String, u64)> {
        let file = dir.join("exporter.toml");
        std::fs::write(&file, config).unwrap();
        let env = HashMap::from([
            ("SECRET".to_owned(), secret.to_owned()),
            (
                "DSN".to_owned(),
                "https://key@glitchtip.example.com/1".to_owned(),
            ),
        ]);
        let source = ConfigSource {
            file: Some(file),
            env: Some(env),
            ..ConfigSource::default()
        };
        let config = source.load().unwrap();
        let target = &config.targets[0];
        let checks = target
            .checks
            .iter()
            .map(|c| (c.name.clone(), c.fingerprint));
        let queue = target
            .queue
            .iter()
            .map(|q| ("queue".to_owned(), q.fingerprint));
        checks.chain(queue).collect()
    }

    #[test]
    fn a_changed_secret_changes_exactly_the_fingerprints_of_what_reads_it() {
        let first = fingerprints("one");
        assert_eq!(first, fingerprints("one"));
        let second = fingerprints("two");
        assert_eq!(first.len(), 7, "{first:?}");
        for ((name, before), (_, after)) in first.iter().zip(&second) {
            let reads_secret = matches!(name.as_str(), "health" | "api" | "canary" | "queue");
            assert_eq!(before != after, reads_secret, "{name}");
        }
    }

    /// A self-signed CA certificate in PEM.
    fn ca_pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_ca_file_rewritten_in_place_changes_every_check_that_trusts_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("{CONFIG}[targets.p.tls]\nca_file = \"ca.pem\"\n");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem("first CA")).unwrap();
        let first = fingerprints_in(dir.path(), &config, "s");
        assert_eq!(first, fingerprints_in(dir.path(), &config, "s"));
        std::fs::write(&ca, ca_pem("second CA")).unwrap();
        let second = fingerprints_in(dir.path(), &config, "s");
        assert_eq!(first.len(), 7, "{first:?}");
        for ((name, before), (_, after)) in first.iter().zip(&second) {
            // The queue reader speaks Redis without TLS here.
            assert_eq!(before != after, name != "queue", "{name}");
        }
    }
}
