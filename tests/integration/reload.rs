//! Reload: removed targets and checks leave no stale series, changed checks start fresh,
//! a bad config keeps the old one in force; a changed version replaces its series.

use std::time::Duration;

use crate::helpers::{self, Samples};
use crate::stub::{Behavior, Scenario, StubGlitchTip};

fn two_targets(a: &StubGlitchTip, b: &StubGlitchTip) -> String {
    format!(
        "[server]\nmode = \"scrape\"\n[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[targets.a]\nurl = \"{}\"\n[targets.b]\nurl = \"{}\"\n",
        a.url(),
        b.url()
    )
}

fn mentions(m: &Samples, target: &str) -> usize {
    m.0.iter()
        .filter(|(_, labels, _)| labels.get("target").map(String::as_str) == Some(target))
        .count()
}

#[tokio::test]
async fn removed_target_and_check_leave_no_series() {
    let a = StubGlitchTip::start(Scenario::Healthy).await;
    let b = StubGlitchTip::start(Scenario::Healthy).await;
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&two_targets(&a, &b), deps).await;
    let before = exporter.metrics().await;
    assert!(mentions(&before, "b") > 0);
    assert!(before.has("glitchtip_version_info", &[("target", "b")]));

    // Drop target b and a's dashboard check.
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[targets.a]\nurl = \"{}\"\n[targets.a.checks.dashboard]\nenabled = false\n",
        a.url()
    );
    let r = exporter.reload(&toml).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = exporter.metrics().await;
    assert_eq!(mentions(&after, "b"), 0, "no series of the removed target");
    assert!(!after.has("glitchtip_up", &[("check", "dashboard")]));
    assert!(!after.has("glitchtip_probe_failure_reason", &[("check", "dashboard")]));
    assert_eq!(
        after.check("glitchtip_up", "a", "health"),
        1.0,
        "kept checks keep their series"
    );
    assert_eq!(exporter.get("/probe?target=b").await.status, 400);

    // A broken config is refused; the one in force stays.
    let r = exporter.reload("[targets.a]\nurl = \"not a url\"\n").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("targets.a.url"), "{}", r.body);
    let m = exporter.metrics().await;
    assert_eq!(
        m.get("glitchtip_exporter_config_last_reload_successful", &[]),
        0.0
    );
    assert_eq!(m.check("glitchtip_up", "a", "health"), 1.0);
    exporter.stop().await;
}

#[tokio::test]
async fn changed_check_starts_fresh() {
    let a = StubGlitchTip::start(Scenario::BackendOnly).await;
    let b = StubGlitchTip::start(Scenario::Healthy).await;
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&two_targets(&a, &b), deps).await;
    let m = exporter.metrics().await;
    assert_eq!(m.check("glitchtip_up", "a", "dashboard"), 0.0);
    let toml = format!(
        "{}[targets.a.checks.dashboard]\nexpect_status = [500]\nkeyword = \"\"\n",
        two_targets(&a, &b)
    );
    assert_eq!(exporter.reload(&toml).await.status, 200);
    let m = exporter.metrics().await;
    assert_eq!(
        m.check("glitchtip_up", "a", "dashboard"),
        1.0,
        "probed again with the new expectation"
    );
    assert_eq!(
        m.get(
            "glitchtip_probes_total",
            &[
                ("target", "a"),
                ("check", "dashboard"),
                ("result", "failure")
            ]
        ),
        0.0
    );
    exporter.stop().await;
}

#[tokio::test]
async fn changed_version_replaces_its_series() {
    let a = StubGlitchTip::start(Scenario::Healthy).await;
    let toml = format!(
        "[server]\nmode = \"scrape\"\n[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[targets.a]\nurl = \"{}\"\n",
        a.url()
    );
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    let m = exporter.metrics().await;
    assert!(m.has(
        "glitchtip_version_info",
        &[("target", "a"), ("version", "0.0.0-unknown")]
    ));
    let long = "6.1.3-".to_owned() + &"x".repeat(500);
    a.set_behavior(
        "/api/settings/",
        Behavior::Status {
            status: 200,
            content_type: "application/json",
            body: format!(r#"{{"version": "{long}"}}"#),
        },
    );
    // Scrape mode probes a check at most once per interval (1 s here).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = exporter.metrics().await;
    let versions = m.find("glitchtip_version_info", &[("target", "a")]);
    assert_eq!(
        versions.len(),
        1,
        "the old version's series is gone: {versions:?}"
    );
    let version = &versions[0].0["version"];
    assert_eq!(version.chars().count(), 64, "capped");
    assert!(version.starts_with("6.1.3-xxx"));
    exporter.stop().await;
}
