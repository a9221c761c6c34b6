//! The annotated `exporter.toml` as shipped: started as it is with only the URL changed, it
//! gives all-green checks against a healthy GlitchTip (the stub replaying the recorded
//! healthy 5.x) and logs no warning; its header's environment-override examples work as
//! written.

use std::collections::HashMap;
use std::path::Path;

use glitchtip_exporter::config::{ConfigSource, Mode};

use crate::canary::Capture;
use crate::helpers::{self, Samples};
use crate::stub::{Scenario, StubGlitchTip};

const SHIPPED_URL_LINE: &str = "\nurl = \"https://glitchtip.example.com\"\n";

fn shipped() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("exporter.toml")).unwrap()
}

/// The shipped file with the target URL (its one uncommented `url` line) replaced.
fn shipped_with_url(url: &str) -> String {
    let text = shipped();
    assert_eq!(text.matches(SHIPPED_URL_LINE).count(), 1, "one url line");
    text.replace(SHIPPED_URL_LINE, &format!("\nurl = \"{url}\"\n"))
}

fn prod_checks(s: &Samples) -> Vec<(String, f64)> {
    let mut checks: Vec<(String, f64)> = s
        .find("glitchtip_up", &[("target", "prod")])
        .into_iter()
        .map(|(labels, v)| (labels["check"].clone(), v))
        .collect();
    checks.sort_by(|a, b| a.0.cmp(&b.0));
    checks
}

#[tokio::test]
async fn shipped_exporter_toml_is_all_green_and_warns_of_nothing() {
    let (logs, _guard) = Capture::install();
    let stub = StubGlitchTip::start(Scenario::Healthy).await;
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&shipped_with_url(&stub.url()), deps).await;
    let expected: Vec<(String, f64)> = ["api", "dashboard", "database", "health"]
        .into_iter()
        .map(|c| (c.to_owned(), 1.0))
        .collect();
    let s = exporter
        .wait_for("every shipped check up", &["glitchtip_up"], |s| {
            prod_checks(s) == expected
        })
        .await;
    for (check, _) in &expected {
        assert_eq!(s.reason("prod", check), "none", "{check}");
    }
    exporter.stop().await;
    let text = logs.text();
    assert!(text.contains("exporter started"), "logs captured: {text}");
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert_eq!(warnings, Vec::<&str>::new());
    assert_eq!(
        glitchtip_exporter::config::ConfigSource {
            file: Some(exporter_file(&stub.url()).path().to_owned()),
            env: Some(HashMap::new()),
            ..Default::default()
        }
        .load()
        .unwrap()
        .warnings(),
        Vec::<String>::new()
    );
}

fn exporter_file(url: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), shipped_with_url(url)).unwrap();
    file
}

/// The `#   GLITCHTIP_EXPORTER__…=…` lines of the header, as `(name, value)`.
fn header_overrides() -> Vec<(String, String)> {
    shipped()
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').trim().split_once('='))
        .filter(|(name, _)| name.starts_with("GLITCHTIP_EXPORTER__"))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn header_environment_overrides_work_as_written() {
    let overrides = header_overrides();
    assert_eq!(overrides.len(), 3, "{overrides:?}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("exporter.toml");
    let config = ConfigSource {
        file: Some(path),
        env: Some(overrides.into_iter().collect()),
        ..Default::default()
    }
    .load()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.mode, Mode::Scrape);
    let prod = config.target("prod").unwrap();
    assert_eq!(prod.url.as_str(), "https://glitchtip.example.net/");
    let names: Vec<&str> = prod.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["api", "database", "health", "tls"]);
}

#[test]
fn readme_spells_overrides_as_the_file_does() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let rule = "GLITCHTIP_EXPORTER__ + the key path in capitals";
    assert!(shipped().contains(rule));
    assert!(readme.contains("`GLITCHTIP_EXPORTER__` + the key path in capitals"));
    for (name, _) in header_overrides() {
        assert_eq!(name, name.to_uppercase(), "{name}");
    }
}
