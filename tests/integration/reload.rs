//! Reload: removed targets and checks leave no stale series, changed checks keep their
//! state, a bad config keeps the old one in force; a changed version replaces its series;
//! concurrent reloads share loads and log each outcome once.

use std::time::Duration;

use crate::helpers::{self, Captured, Samples};
use crate::stub::{Behavior, Scenario, StubGlitchTip};

fn two_targets(a: &StubGlitchTip, b: &StubGlitchTip) -> String {
    format!(
        "[server]\nmode = \"scrape\"\n[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[targets.a]\nurl = \"{}\"\n[targets.b]\nurl = \"{}\"\n",
        a.url(),
        b.url()
    )
}

fn one_target(a: &StubGlitchTip) -> String {
    format!(
        "[server]\nmode = \"scrape\"\n[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[targets.a]\nurl = \"{}\"\n",
        a.url()
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

/// Regression (#18): a reload that changed a failing check's settings, or a `[defaults]`
/// key, dropped its series and restarted its count at 1, so that a firing
/// GlitchTipCheckDown (`glitchtip_consecutive_failures >= 2`) resolved and fired again.
#[tokio::test]
async fn changed_check_keeps_its_state_and_counts_on() {
    let a = StubGlitchTip::start(Scenario::BackendOnly).await;
    let b = StubGlitchTip::start(Scenario::Healthy).await;
    let (deps, _clock) = helpers::deps();
    let base = two_targets(&a, &b);
    let exporter = helpers::start(&base, deps).await;
    let m = exporter.metrics().await;
    assert_eq!(
        m.check("glitchtip_consecutive_failures", "a", "dashboard"),
        1.0
    );
    let own = "[targets.a.checks.dashboard]\ntimeout = \"700ms\"\n";
    let changes = [
        ("[defaults] timeout", base.replace("\"500ms\"", "\"600ms\"")),
        ("the check's own timeout", format!("{base}{own}")),
        (
            "the check's own keyword",
            format!("{base}{own}keyword = \"nowhere\"\n"),
        ),
    ];
    for (i, (what, toml)) in changes.iter().enumerate() {
        let before = i as f64 + 1.0;
        assert_eq!(exporter.reload(toml).await.status, 200, "{what}");
        // Right after the reload, before any probe: the series are as they were.
        let now = Samples::parse(&String::from_utf8(exporter.exporter.render()).unwrap());
        assert_eq!(
            now.check("glitchtip_consecutive_failures", "a", "dashboard"),
            before,
            "{what}"
        );
        assert_eq!(now.check("glitchtip_up", "a", "dashboard"), 0.0, "{what}");
        // The next scrape probes with the new settings and counts on.
        let m = exporter.metrics().await;
        assert_eq!(
            m.check("glitchtip_consecutive_failures", "a", "dashboard"),
            before + 1.0,
            "{what}"
        );
    }
    // A change that makes it pass: the same series recover; the counters go on.
    let toml =
        format!("{base}[targets.a.checks.dashboard]\nexpect_status = [500]\nkeyword = \"\"\n");
    assert_eq!(exporter.reload(&toml).await.status, 200);
    let m = exporter.metrics().await;
    assert_eq!(m.check("glitchtip_up", "a", "dashboard"), 1.0);
    assert_eq!(
        m.check("glitchtip_consecutive_failures", "a", "dashboard"),
        0.0
    );
    let probes = |result| {
        m.get(
            "glitchtip_probes_total",
            &[("target", "a"), ("check", "dashboard"), ("result", result)],
        )
    };
    assert_eq!((probes("failure"), probes("success")), (4.0, 1.0));
    exporter.stop().await;
}

/// Regression (#18): eight connections drove 567 reloads a second, each logged.
#[tokio::test]
async fn concurrent_reloads_share_loads_answer_each_and_log_each_outcome_once() {
    let (logs, _guard) = Captured::install(tracing::Level::DEBUG);
    let a = StubGlitchTip::start(Scenario::Healthy).await;
    let toml = one_target(&a);
    let (deps, _clock) = helpers::deps();
    let exporter = helpers::start(&toml, deps).await;
    const N: u64 = 16;
    // N requests at once; answers how many loads they cost, and their answers.
    let flood = || async {
        let before = exporter.exporter.reloads_run();
        let answers = futures::future::join_all((0..N).map(|_| exporter.post("/-/reload"))).await;
        let loads = exporter.exporter.reloads_run() - before;
        assert!((1..N).contains(&loads), "{loads} loads for {N} requests");
        answers
    };
    let reloaded = |answers: Vec<helpers::Response>| {
        for r in answers {
            assert_eq!((r.status, r.body.as_str()), (200, "config reloaded\n"));
        }
    };

    // The same config as at the start: the same outcome, at debug only.
    reloaded(flood().await);
    let errors_or_infos =
        || logs.count("ERROR", "config reload") + logs.count("INFO", "config reload");
    assert_eq!(errors_or_infos(), 0);
    assert!(logs.count("DEBUG", "config reloaded") >= 1);

    // A broken config: every request answers its error; one error line in all.
    let path = exporter.config_file.path().to_owned();
    std::fs::write(&path, "[targets.a]\nurl = \"not a url\"\n").unwrap();
    for _ in 0..2 {
        for r in flood().await {
            assert_eq!(r.status, 500);
            assert!(r.body.contains("targets.a.url"), "{}", r.body);
        }
    }
    assert_eq!(logs.count("ERROR", "config reload failed"), 1);
    assert!(logs.count("DEBUG", "config reload failed") >= 1);

    // Fixed again: one info line.
    std::fs::write(&path, &toml).unwrap();
    reloaded(flood().await);
    assert_eq!(logs.count("INFO", "config reloaded"), 1);
    assert_eq!(logs.count("ERROR", "config reload"), 1);
    exporter.stop().await;
}

#[tokio::test]
async fn changed_version_replaces_its_series() {
    let a = StubGlitchTip::start(Scenario::Healthy).await;
    let toml = one_target(&a);
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
