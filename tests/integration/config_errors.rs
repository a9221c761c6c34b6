//! Config loading as a user meets it: every invalid config in `tests/fixtures/bad-configs/`
//! with the exact message it produces, and the valid paths around them — the annotated
//! `exporter.toml` against [`defaults`], environment overrides, `--target`, and how the
//! default checks merge with a target's own.
//!
//! Messages are asserted whole, as blackbox_exporter and ripgrep do, so that a change of
//! wording is a deliberate change of this file. `{file}` in an expected message stands for
//! the fixture's full path, `{dir}` its folder: paths inside a config (`ca_file`, token files)
//! are relative to the config file's folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use glitchtip_exporter::checks::{CheckKind, CheckSpec, HttpCheck, Schedule, StatusSet};
use glitchtip_exporter::config::raw::RawStatus;
use glitchtip_exporter::config::{Config, ConfigError, ConfigSource, Mode, defaults};

/// Directory of the invalid configs.
const BAD_CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad-configs");

/// The names of the default checks, in the order a target lists them (sorted).
const DEFAULT_CHECK_NAMES: [&str; 4] = ["api", "dashboard", "database", "health"];
/// The checks an https:// target gets: the default checks and the tls check (sorted).
const HTTPS_CHECK_NAMES: [&str; 5] = ["api", "dashboard", "database", "health", "tls"];

fn fixture(name: &str) -> PathBuf {
    Path::new(BAD_CONFIGS).join(name)
}

/// Loads `file` with an empty environment and nothing from the command line.
fn load_file(file: &Path) -> Result<Config, ConfigError> {
    ConfigSource {
        file: Some(file.to_owned()),
        env: Some(HashMap::new()),
        ..Default::default()
    }
    .load()
}

fn assert_error(name: &str, expected: &str) {
    let path = fixture(name);
    let err = load_file(&path).expect_err("the fixture must be rejected");
    let expected = expected
        .replace("{file}", &path.display().to_string())
        .replace("{dir}", BAD_CONFIGS);
    assert_eq!(err.to_string(), expected, "fixture {name}");
}

/// `name, "fixture.toml", "expected message";` — one test per line, plus [`FIXTURES`], the
/// list that keeps fixture files and cases in step.
macro_rules! cases {
    ($($name:ident, $fixture:literal, $expected:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_error($fixture, $expected);
            }
        )*

        /// Every fixture that has a case.
        const FIXTURES: &[&str] = &[$($fixture),*];
    };
}

cases! {
    unknown_top_level_key, "unknown_top_level_key.toml", "config file {file}, line 2, column 2: unknown key `sever`, did you mean `server`?";
    unknown_check_key, "unknown_check_key.toml", "config file {file}, line 6, column 1: targets.prod.checks.health: unknown key `expected_status`, did you mean `expect_status`?";
    targets_wrong_type, "targets_wrong_type.toml", "config file {file}, line 2, column 1: targets: a table, got a number";
    duration_without_unit, "duration_without_unit.toml", r#"config file {file}, line 3, column 1: defaults.interval: a duration such as "10s" or "1m 30s", got "10": add a unit, such as "10s""#;
    duration_in_words, "duration_in_words.toml", r#"config file {file}, line 4, column 1: targets.prod.timeout: a duration such as "10s" or "1m 30s", got "ten seconds""#;
    interval_zero, "interval_zero.toml", r#"config file {file}, line 6, column 1: targets.prod.checks.health.interval: a duration above zero, such as "5s""#;
    timeout_over_interval, "timeout_over_interval.toml", "config file {file}, line 7, column 1: targets.prod.checks.health.timeout: a timeout no longer than the interval (10s), got 30s";
    url_not_http, "url_not_http.toml", r#"config file {file}, line 3, column 1: targets.prod.url: an absolute http:// or https:// URL, got "ftp://glitchtip.example.com""#;
    url_with_credentials, "url_with_credentials.toml", "config file {file}, line 3, column 1: targets.prod.url: a URL without credentials (use basic_auth with a password file)";
    url_missing, "url_missing.toml", r#"config file {file}, line 2, column 10: targets.prod.url: a base URL such as "https://glitchtip.example.com""#;
    target_name_uppercase, "target_name_uppercase.toml", r#"config file {file}, line 2, column 10: targets.Prod: a name of at most 63 lowercase letters, digits, '_' and '-', starting with a letter or digit, without "__", got "Prod""#;
    custom_check_without_path, "custom_check_without_path.toml", "config file {file}, line 5, column 22: targets.prod.checks.ingest: a `path` or a `url` (this is not one of the default checks health, database, api, dashboard)";
    check_path_and_url, "check_path_and_url.toml", "config file {file}, line 5, column 22: targets.prod.checks.ingest: either `path` or `url`, not both";
    status_out_of_range, "status_out_of_range.toml", "config file {file}, line 6, column 1: targets.prod.checks.health.expect_status: status codes from 100 to 599, got 600";
    status_range_reversed, "status_range_reversed.toml", r#"config file {file}, line 6, column 1: targets.prod.checks.health.expect_status: a range whose start is not above its end, got "300-200""#;
    regex_invalid, "regex_invalid.toml", "config file {file}, line 6, column 1: targets.prod.checks.health.regex: a valid regular expression: regex parse error:\n    ok(\n      ^\nerror: unclosed group";
    json_path_empty, "json_path_empty.toml", r#"config file {file}, line 6, column 10: targets.prod.checks.database.json.path: a dot-separated field path such as "version", got """#;
    version_field_twice, "version_field_twice.toml", "config file {file}, line 12, column 1: targets.prod.checks.settings_again.version_field: at most one check per target reading the version, but settings and settings_again both do (set version_field = \"\" on one)";
    bearer_token_and_basic_auth, "bearer_token_and_basic_auth.toml", "config file {file}, line 5, column 22: targets.prod.checks.organizations: either `bearer_token` or `basic_auth`, not both";
    timeout_over_interval_in_defaults, "timeout_over_interval_in_defaults.toml", "config file {file}, line 5, column 1: defaults.timeout: a timeout no longer than the interval (5s), got 8s";
    interval_zero_on_target, "interval_zero_on_target.toml", "config file {file}, line 4, column 1: targets.prod.interval: a duration above zero, such as \"5s\"";
    server_mode_bad, "server_mode_bad.toml", r#"config file {file}, line 3, column 1: server.mode: "interval" or "scrape", got "push""#;
    server_listen_bad, "server_listen_bad.toml", r#"config file {file}, line 3, column 1: server.listen: an IP address and port such as "0.0.0.0:10099", got "localhost""#;
    ca_file_missing, "ca_file_missing.toml", "config file {file}, line 6, column 1: targets.prod.tls.ca_file: a readable PEM file of CA certificates (cannot read CA file {dir}/no-such-ca.pem: No such file or directory (os error 2))";
    ca_file_without_certificate, "ca_file_without_certificate.toml", "config file {file}, line 6, column 1: targets.prod.tls.ca_file: a readable PEM file of CA certificates (CA file {dir}/not-a-certificate.pem holds no PEM certificate)";
    bearer_token_file_and_env, "bearer_token_file_and_env.toml", "config file {file}, line 7, column 1: targets.prod.checks.organizations.bearer_token: exactly one of `file` or `env`";
    bearer_token_file_missing, "bearer_token_file_missing.toml", "config file {file}, line 7, column 18: targets.prod.checks.organizations.bearer_token.file: a readable file, cannot read {dir}/no-such-token: No such file or directory (os error 2)";
    bearer_token_env_unset, "bearer_token_env_unset.toml", "config file {file}, line 7, column 18: targets.prod.checks.organizations.bearer_token.env: environment variable GLITCHTIP_EXPORTER_TEST_UNSET_TOKEN to be set and not empty";
    proxy_https, "proxy_https.toml", r#"config file {file}, line 4, column 1: targets.prod.proxy: an http:// proxy URL such as "http://proxy:3128", got "https://proxy.example.com:3128""#;
    proxy_with_credentials, "proxy_with_credentials.toml", r#"config file {file}, line 4, column 1: targets.prod.proxy: a proxy URL without credentials such as "http://proxy:3128", with them in proxy_auth = { username = "…", password = { file = "…" } }"#;
    proxy_auth_without_proxy, "proxy_auth_without_proxy.toml", "config file {file}, line 4, column 1: targets.prod.proxy_auth: a `proxy` beside it: credentials go only to the proxy they are for";
    proxy_auth_password_missing, "proxy_auth_password_missing.toml", "config file {file}, line 4, column 51: targets.prod.proxy_auth.password.file: a readable file, cannot read {dir}/no-such-proxy-password: No such file or directory (os error 2)";
    sensitive_header_invalid, "sensitive_header_invalid.toml", r#"config file {file}, line 3, column 1: targets.prod.sensitive_headers: a list of HTTP header names such as ["X-Api-Key"], got "X Api Key""#;
    header_name_invalid, "header_name_invalid.toml", "config file {file}, line 4, column 13: targets.prod.headers.X Forwarded Host: a valid HTTP header name";
    server_header_read_timeout_too_short, "server_header_read_timeout_too_short.toml", r#"config file {file}, line 3, column 1: server.header_read_timeout: a duration from 100ms to 1m, such as "5s", got 10ms"#;
    server_max_header_bytes_too_small, "server_max_header_bytes_too_small.toml", "config file {file}, line 3, column 1: server.max_header_bytes: a size in bytes from 1024 to 65536, got 100";
    server_max_connections_zero, "server_max_connections_zero.toml", "config file {file}, line 3, column 1: server.max_connections: a number of connections from 1 to 1048576, got 0";
    server_max_concurrent_probes_too_many, "server_max_concurrent_probes_too_many.toml", "config file {file}, line 3, column 1: server.max_concurrent_probes: a number of requests from 1 to 1024, got 5000";
    empty_file, "empty.toml", "config file {file}: targets: at least one target: pass --target URL or add a [targets.<name>] table";
    bearer_token_inline, "bearer_token_inline.toml", r#"config file {file}, line 7, column 1: targets.prod.checks.organizations.bearer_token: { file = "…" } or { env = "…" }, never the secret itself (found a string, not shown)"#;
    basic_auth_password_inline, "basic_auth_password_inline.toml", r#"config file {file}, line 7, column 38: targets.prod.checks.organizations.basic_auth.password: { file = "…" } or { env = "…" }, never the secret itself (found a string, not shown)"#;
    basic_auth_string, "basic_auth_string.toml", r#"config file {file}, line 7, column 1: targets.prod.checks.organizations.basic_auth: a table { username = "…", password = { file = "…" } or { env = "…" } }, found a string (not shown)"#;
    canary_dsn_inline, "canary_dsn_inline.toml", r#"config file {file}, line 6, column 1: targets.prod.canary.dsn: { file = "…" } or { env = "…" }, never the secret itself (found a string, not shown)"#;
    canary_token_number, "canary_token_number.toml", r#"config file {file}, line 7, column 1: targets.prod.canary.token: { file = "…" } or { env = "…" }, never the secret itself (found a number, not shown)"#;
    heartbeat_token_inline, "heartbeat_token_inline.toml", r#"config file {file}, line 4, column 1: heartbeats.worker.token: { file = "…" } or { env = "…" }, never the secret itself (found a string, not shown)"#;
    queue_password_extra_keys, "queue_password_extra_keys.toml", r#"config file {file}, line 7, column 1: targets.prod.queue.password: { file = "…" } or { env = "…" }, found a table with other keys (not shown)"#;
    bearer_token_env_is_the_token, "bearer_token_env_is_the_token.toml", r#"config file {file}, line 7, column 18: targets.prod.checks.organizations.bearer_token.env: the name of a set environment variable, such as "GLITCHTIP_TOKEN" (the name given is not shown: it is not set and looks like no variable name, is it the secret itself?)"#;
    bearer_token_file_not_regular, "bearer_token_file_not_regular.toml", "config file {file}, line 7, column 18: targets.prod.checks.organizations.bearer_token.file: a readable file, cannot read /dev/zero: not a regular file but a character device";
    toml_syntax_unquoted_token, "toml_syntax_unquoted_token.toml", "config file {file}: TOML syntax error at line 7, column 16: string values must be quoted, expected literal string";
    url_with_query, "url_with_query.toml", "config file {file}, line 3, column 1: targets.prod.url: a base URL without a query or fragment (credentials go in a check's bearer_token or basic_auth)";
    url_not_http_with_credentials, "url_not_http_with_credentials.toml", r#"config file {file}, line 3, column 1: targets.prod.url: an absolute http:// or https:// URL, got "ftp://…@glitchtip.example.com/""#;
    interval_huge, "interval_huge.toml", "config file {file}, line 6, column 1: targets.prod.checks.health.interval: a duration from 100ms to 1day, got 10000000000years";
    retry_interval_tiny, "retry_interval_tiny.toml", "config file {file}, line 3, column 1: targets.prod.retry_interval: a duration from 100ms to 1day, got 1ms";
    max_body_bytes_huge, "max_body_bytes_huge.toml", "config file {file}, line 2, column 1: defaults.max_body_bytes: a number of bytes from 1 to 67108864 (64 MiB), got 9223372036854775807";
    max_body_bytes_negative, "max_body_bytes_negative.toml", "config file {file}, line 3, column 1: targets.prod.max_body_bytes: a whole number, 0 or more, got a negative number";
    max_redirects_huge, "max_redirects_huge.toml", "config file {file}, line 6, column 1: targets.prod.checks.health.max_redirects: a number from 0 to 20, got 4000000000";
    heartbeat_interval_huge, "heartbeat_interval_huge.toml", "config file {file}, line 3, column 1: heartbeats.worker.interval: a duration from 1s to 366days, got 10000000000years";
    heartbeat_grace_huge, "heartbeat_grace_huge.toml", "config file {file}, line 3, column 1: heartbeats.worker.grace: a duration from 0s to 366days, got 1year 1month 4days 7h 26m 24s";
    canary_timeout_huge, "canary_timeout_huge.toml", "config file {file}, line 9, column 1: targets.prod.canary.timeout: a duration from 100ms to 1day, got 1day 1h";
    queue_interval_huge, "queue_interval_huge.toml", "config file {file}, line 6, column 1: targets.prod.queue.interval: a duration from 100ms to 1day, got 100years";
    shutdown_timeout_huge, "shutdown_timeout_huge.toml", "config file {file}, line 2, column 1: server.shutdown_timeout: a duration from 0s to 1h, got 2h";
    toml_syntax, "toml_syntax.toml", "config file {file}: TOML syntax error at line 3, column 37: invalid basic string, expected `\"`";
    queue_scheduler_task_age_bad, "queue_scheduler_task_age_bad.toml", r#"config file {file}, line 6, column 21: targets.prod.queue.scheduler_tasks.uptime-dispatch-checks: a duration above zero, such as "30s", got "soon""#;
    queue_scheduler_task_name_bad, "queue_scheduler_task_name_bad.toml", r#"config file {file}, line 6, column 1: targets.prod.queue.scheduler_tasks: task names of 1 to 64 letters, digits, -, _, . or :, got "it's""#;
    queue_postgres_sslmode_prefer, "queue_postgres_sslmode_prefer.toml", r#"config file {file}, line 5, column 1: targets.prod.queue.url: sslmode disable, require or verify-full, got "prefer""#;
    queue_postgres_without_user, "queue_postgres_without_user.toml", r#"config file {file}, line 5, column 1: targets.prod.queue.url: a user name in a postgres:// URL, such as "postgres://glitchtip_exporter@db:5432/glitchtip""#;
    queue_postgres_with_prefix, "queue_postgres_with_prefix.toml", "config file {file}, line 6, column 1: targets.prod.queue.prefix: no such setting with a postgres:// URL (the tables are django-vtasks')";
    default_checks_yes, "default_checks_yes.toml", "config file {file}, line 4, column 1: targets.prod.default_checks: true or false (without quotes), got a string";
    default_checks_no, "default_checks_no.toml", "config file {file}, line 4, column 1: targets.prod.default_checks: true or false (without quotes), got a string";
    default_checks_one, "default_checks_one.toml", "config file {file}, line 4, column 1: targets.prod.default_checks: true or false (without quotes), got a number";
    enabled_string, "enabled_string.toml", "config file {file}, line 6, column 1: targets.prod.checks.dashboard.enabled: true or false (without quotes), got a string";
    target_without_checks, "target_without_checks.toml", "config file {file}, line 2, column 10: targets.prod: at least one enabled check, got none: keep the default checks (default_checks = true) or add a [targets.prod.checks.<name>] table with a path";
    target_every_check_disabled, "target_every_check_disabled.toml", "config file {file}, line 2, column 10: targets.prod: at least one enabled check, got none: keep the default checks (default_checks = true) or add a [targets.prod.checks.<name>] table with a path";
    duration_number, "duration_number.toml", r#"config file {file}, line 4, column 1: targets.prod.interval: a duration such as "10s" or "1m 30s", got 10: add a unit, such as "10s""#;
    unknown_target_key, "unknown_target_key.toml", "config file {file}, line 4, column 1: targets.prod: unknown key `time_out`, did you mean `timeout`?";
    unknown_key_no_suggestion, "unknown_key_no_suggestion.toml", "config file {file}, line 3, column 1: server: unknown key `colour`, expected one of `listen`, `mode`, `shutdown_timeout`, `state_file`, `header_read_timeout`, `max_connections`, `max_header_bytes`, `max_concurrent_probes`";
    secret_file_number, "secret_file_number.toml", "config file {file}, line 7, column 18: targets.prod.checks.organizations.bearer_token.file: a readable file, cannot read {dir}/5: No such file or directory (os error 2)";
    duration_negative_number, "duration_negative_number.toml", r#"config file {file}, line 4, column 1: targets.prod.timeout: a duration such as "10s" or "1m 30s", got -5"#;
    status_not_a_code, "status_not_a_code.toml", r#"config file {file}, line 6, column 1: targets.prod.checks.health.expect_status[0]: status codes such as 200 and ranges such as "200-299""#;
}

#[test]
fn every_bad_config_has_a_case() {
    let mut on_disk: Vec<String> = std::fs::read_dir(BAD_CONFIGS)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = FIXTURES.iter().map(|f| (*f).to_owned()).collect();
    covered.sort();
    assert_eq!(on_disk, covered);
}

#[test]
fn missing_file_is_named() {
    let path = fixture("no-such-config.toml");
    let err = load_file(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "config file {}: cannot read the file: No such file or directory (os error 2)",
            path.display()
        )
    );
}

// ---- valid configs -------------------------------------------------------------------

/// A config file that lives as long as the test.
fn write_toml(toml: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), toml).unwrap();
    file
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_toml(toml: &str) -> Config {
    let file = write_toml(toml);
    load_file(file.path()).unwrap_or_else(|e| panic!("{e}"))
}

fn http(spec: &CheckSpec) -> &HttpCheck {
    match &spec.kind {
        CheckKind::Http(check) => check,
        other => panic!("{} is not an HTTP check: {other:?}", spec.name),
    }
}

fn check<'c>(config: &'c Config, target: &str, name: &str) -> &'c CheckSpec {
    let target = config
        .target(target)
        .unwrap_or_else(|| panic!("no target {target}"));
    target
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in target {}", target.name))
}

fn check_names(config: &Config, target: &str) -> Vec<String> {
    config
        .target(target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .checks
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

fn default_schedule() -> Schedule {
    Schedule {
        interval: defaults::INTERVAL,
        timeout: defaults::TIMEOUT,
        retry_interval: defaults::RETRY_INTERVAL,
    }
}

fn status_set(raw: &[RawStatus]) -> StatusSet {
    StatusSet(
        raw.iter()
            .map(|s| match s {
                RawStatus::Code(c) => {
                    let c = u16::try_from(*c).unwrap();
                    (c, c)
                }
                RawStatus::Text(t) => panic!("the defaults use codes, got {t:?}"),
            })
            .collect(),
    )
}

/// What a check does, as comparable text: everything but the TLS configuration.
fn describe(spec: &CheckSpec) -> String {
    let c = http(spec);
    format!(
        "{} {} status={} keyword={:?} regex={:?} json={:?} version={:?} redirects={}/{} max_body={} schedule={:?} headers={:?} proxy={:?}",
        c.method,
        c.url,
        c.expect_status,
        c.body.keyword,
        c.body.regex.as_ref().map(|r| r.as_str().to_owned()),
        c.body
            .json
            .as_ref()
            .map(|j| (j.path.to_string(), j.equals.clone())),
        c.version_field.as_ref().map(ToString::to_string),
        c.follow_redirects,
        c.max_redirects,
        c.max_body_bytes,
        spec.schedule,
        c.headers,
        c.proxy,
    )
}

#[test]
fn exporter_toml_shows_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("exporter.toml");
    let config = load_file(&path).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(config.listen, defaults::LISTEN.parse().unwrap());
    assert_eq!(config.listen.port(), defaults::PORT);
    assert_eq!(config.mode, Mode::Interval);
    assert_eq!(config.shutdown_timeout, defaults::SHUTDOWN_TIMEOUT);
    assert_eq!(
        config.limits,
        glitchtip_exporter::config::ServerLimits::default()
    );
    assert_eq!(
        config.limits.header_read_timeout,
        defaults::HEADER_READ_TIMEOUT
    );
    for name in DEFAULT_CHECK_NAMES {
        let spec = check(&config, "prod", name);
        assert_eq!(spec.schedule, default_schedule(), "check {name}");
        assert_eq!(
            http(spec).max_body_bytes,
            defaults::MAX_BODY_BYTES,
            "check {name}"
        );
        assert!(!spec.tls_insecure(), "check {name}");
    }

    // The default checks as exporter.toml spells them out are the built-in ones.
    let built_in = load_toml("[targets.prod]\nurl = \"https://glitchtip.example.com\"\n");
    for name in DEFAULT_CHECK_NAMES {
        assert_eq!(
            describe(check(&config, "prod", name)),
            describe(check(&built_in, "prod", name)),
            "check {name}"
        );
    }
}

#[test]
fn default_checks_are_added() {
    let config = load_toml("[targets.prod]\nurl = \"https://glitchtip.example.com\"\n");
    assert_eq!(check_names(&config, "prod"), HTTPS_CHECK_NAMES);
    for (name, raw) in defaults::checks() {
        let spec = check(&config, "prod", name);
        let c = http(spec);
        let path = raw.path.as_deref().unwrap();
        assert_eq!(
            c.url.as_str(),
            format!("https://glitchtip.example.com{path}"),
            "check {name}"
        );
        assert_eq!(
            c.expect_status,
            status_set(raw.expect_status.as_deref().unwrap()),
            "check {name}"
        );
        assert_eq!(c.method, http::Method::GET, "check {name}");
        assert_eq!(spec.schedule, default_schedule(), "check {name}");
        assert_eq!(c.max_body_bytes, defaults::MAX_BODY_BYTES, "check {name}");
        assert!(!c.follow_redirects, "check {name}");
        assert_eq!(c.max_redirects, defaults::MAX_REDIRECTS, "check {name}");
    }
    // The README's table, written out once more so that a change of defaults.rs is seen.
    let table = [
        ("health", "/_health/", "200"),
        ("database", "/api/settings/", "200"),
        ("api", "/api/0/organizations/", "401"),
        ("dashboard", "/", "200"),
    ];
    for (name, path, status) in table {
        let c = http(check(&config, "prod", name));
        assert_eq!(c.url.path(), path, "check {name}");
        assert_eq!(c.expect_status.to_string(), status, "check {name}");
    }
    assert_eq!(
        http(check(&config, "prod", "health"))
            .body
            .keyword
            .as_deref(),
        Some("ok")
    );
    assert!(check(&config, "prod", "database").reads_version());
    assert_eq!(
        http(check(&config, "prod", "dashboard"))
            .body
            .keyword
            .as_deref(),
        Some("GlitchTip")
    );
}

#[test]
fn default_checks_keep_the_base_url_path() {
    let config = load_toml("[targets.prod]\nurl = \"https://example.com/glitchtip/\"\n");
    assert_eq!(
        http(check(&config, "prod", "health")).url.as_str(),
        "https://example.com/glitchtip/_health/"
    );
    assert_eq!(
        http(check(&config, "prod", "dashboard")).url.as_str(),
        "https://example.com/glitchtip/"
    );
}

#[test]
fn default_checks_false_leaves_only_the_own_checks() {
    let config = load_toml(
        r#"
        [targets.prod]
        url = "https://glitchtip.example.com"
        default_checks = false

        [targets.prod.checks.internal]
        path = "/api/0/internal/health"
        expect_status = ["200-299"]
        "#,
    );
    assert_eq!(check_names(&config, "prod"), ["internal"]);
    let c = http(check(&config, "prod", "internal"));
    assert_eq!(
        c.url.as_str(),
        "https://glitchtip.example.com/api/0/internal/health"
    );
    assert_eq!(c.expect_status, StatusSet(vec![(200, 299)]));
    assert!(c.body.is_empty());
    assert!(c.version_field.is_none());
}

#[test]
fn default_check_overridden_field_by_field() {
    let config = load_toml(
        r#"
        [targets.prod]
        url = "https://glitchtip.example.com"

        [targets.prod.checks.health]
        timeout = "2s"
        keyword = "healthy"

        [targets.prod.checks.dashboard]
        url = "https://www.example.com/"
        "#,
    );
    let health = check(&config, "prod", "health");
    let c = http(health);
    assert_eq!(c.body.keyword.as_deref(), Some("healthy"));
    assert_eq!(c.url.as_str(), "https://glitchtip.example.com/_health/");
    assert_eq!(c.expect_status, StatusSet(vec![(200, 200)]));
    assert_eq!(
        health.schedule,
        Schedule {
            timeout: Duration::from_secs(2),
            ..default_schedule()
        }
    );
    // An absolute URL replaces the default path; the rest of the default stays.
    let dashboard = http(check(&config, "prod", "dashboard"));
    assert_eq!(dashboard.url.as_str(), "https://www.example.com/");
    assert_eq!(dashboard.body.keyword.as_deref(), Some("GlitchTip"));
    // The checks not mentioned are untouched.
    assert_eq!(check_names(&config, "prod"), HTTPS_CHECK_NAMES);
}

#[test]
fn schedule_most_specific_wins() {
    let config = load_toml(
        r#"
        [defaults]
        interval = "20s"
        max_body_bytes = 1000

        [targets.prod]
        url = "https://glitchtip.example.com"
        timeout = "4s"

        [targets.prod.checks.health]
        retry_interval = "1s"
        max_body_bytes = 2000
        "#,
    );
    let health = check(&config, "prod", "health");
    assert_eq!(
        health.schedule,
        Schedule {
            interval: Duration::from_secs(20),
            timeout: Duration::from_secs(4),
            retry_interval: Duration::from_secs(1),
        }
    );
    assert_eq!(http(health).max_body_bytes, 2000);
    let api = check(&config, "prod", "api");
    assert_eq!(
        api.schedule,
        Schedule {
            interval: Duration::from_secs(20),
            timeout: Duration::from_secs(4),
            retry_interval: defaults::RETRY_INTERVAL,
        }
    );
    assert_eq!(http(api).max_body_bytes, 1000);
}

// ---- environment overrides -------------------------------------------------------------

const PROD: &str = "[targets.prod]\nurl = \"https://glitchtip.example.com\"\n";

fn load_with_env(file: &Path, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    ConfigSource {
        file: Some(file.to_owned()),
        env: Some(env(pairs)),
        ..Default::default()
    }
    .load()
}

#[test]
fn env_override_disables_a_default_check() {
    let file = write_toml(PROD);
    let config = load_with_env(
        file.path(),
        &[(
            "GLITCHTIP_EXPORTER__TARGETS__PROD__CHECKS__DASHBOARD__ENABLED",
            "false",
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        check_names(&config, "prod"),
        ["api", "database", "health", "tls"]
    );
}

#[test]
fn env_override_sets_the_mode() {
    let file = write_toml(PROD);
    let config = load_with_env(
        file.path(),
        &[("GLITCHTIP_EXPORTER__SERVER__MODE", "scrape")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.mode, Mode::Scrape);
}

#[test]
fn env_override_replaces_a_file_value() {
    let file = write_toml(PROD);
    let config = load_with_env(
        file.path(),
        &[
            (
                "GLITCHTIP_EXPORTER__TARGETS__PROD__URL",
                "https://other.example.com",
            ),
            (
                "GLITCHTIP_EXPORTER__TARGETS__PROD__CHECKS__HEALTH__TIMEOUT",
                "2s",
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let health = check(&config, "prod", "health");
    assert_eq!(
        http(health).url.as_str(),
        "https://other.example.com/_health/"
    );
    assert_eq!(health.schedule.timeout, Duration::from_secs(2));
}

#[test]
fn env_override_invalid_value_names_the_environment() {
    let file = write_toml(PROD);
    let err =
        load_with_env(file.path(), &[("GLITCHTIP_EXPORTER__SERVER__MODE", "push")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"config file {} with GLITCHTIP_EXPORTER__* environment overrides: server.mode: "interval" or "scrape", got "push""#,
            file.path().display()
        )
    );
}

#[test]
fn env_override_of_wrong_type_names_the_environment_and_key() {
    let file = write_toml(PROD);
    let err = load_with_env(
        file.path(),
        &[(
            "GLITCHTIP_EXPORTER__TARGETS__PROD__CHECKS__HEALTH__TIMEOUT",
            "ten",
        )],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"config file {} with GLITCHTIP_EXPORTER__* environment overrides: targets.prod.checks.health.timeout: a duration such as "10s" or "1m 30s", got "ten""#,
            file.path().display()
        )
    );
}

#[test]
fn variables_without_the_double_underscore_prefix_are_not_overrides() {
    // GLITCHTIP_EXPORTER_LOG and friends belong to the command line, not to the config.
    let path = fixture("server_mode_bad.toml");
    let err = load_with_env(
        &path,
        &[
            ("GLITCHTIP_EXPORTER_LOG", "debug"),
            ("GLITCHTIP_EXPORTER_CONFIG", "/elsewhere.toml"),
            ("SERVER__MODE", "scrape"),
        ],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"config file {}, line 3, column 1: server.mode: "interval" or "scrape", got "push""#,
            path.display()
        )
    );
}

#[test]
fn env_alone_can_define_a_target() {
    let config = ConfigSource {
        env: Some(env(&[(
            "GLITCHTIP_EXPORTER__TARGETS__PROD__URL",
            "https://glitchtip.example.com",
        )])),
        ..Default::default()
    }
    .load()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check_names(&config, "prod"), HTTPS_CHECK_NAMES);
}

// ---- --target --------------------------------------------------------------------------

fn load_cli(file: Option<&Path>, targets: &[&str]) -> Result<Config, ConfigError> {
    ConfigSource {
        file: file.map(Path::to_owned),
        cli_targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        env: Some(HashMap::new()),
        ..Default::default()
    }
    .load()
}

#[test]
fn cli_target_url_is_named_after_its_host() {
    let config =
        load_cli(None, &["https://glitchtip.example.com"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.targets.len(), 1);
    let target = &config.targets[0];
    assert_eq!(target.name, "glitchtip_example_com");
    assert_eq!(target.url.as_str(), "https://glitchtip.example.com/");
    assert_eq!(
        check_names(&config, "glitchtip_example_com"),
        HTTPS_CHECK_NAMES
    );
}

#[test]
fn cli_target_name_equals_url() {
    let config = load_cli(None, &["prod=https://x.example"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.targets.len(), 1);
    assert_eq!(config.targets[0].name, "prod");
    assert_eq!(config.targets[0].url.as_str(), "https://x.example/");
}

#[test]
fn cli_target_is_added_to_the_file_targets() {
    let file = write_toml(PROD);
    let config = load_cli(Some(file.path()), &["staging=https://staging.example.com"])
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["prod", "staging"]);
}

#[test]
fn cli_target_duplicate_of_a_file_target() {
    let file = write_toml(PROD);
    let err = load_cli(Some(file.path()), &["prod=https://x.example"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"config file {}: --target: target name "prod" is already configured; use NAME=URL to pick another"#,
            file.path().display()
        )
    );
}

#[test]
fn cli_target_given_twice() {
    let err = load_cli(
        None,
        &[
            "https://glitchtip.example.com",
            "https://glitchtip.example.com/",
        ],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"command line: --target: target name "glitchtip_example_com" is already configured; use NAME=URL to pick another"#
    );
}

#[test]
fn cli_target_invalid_name() {
    let err = load_cli(None, &["Prod=https://x.example"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"command line: --target: a name of at most 63 lowercase letters, digits, '_' and '-', starting with a letter or digit, without "__", got "Prod""#
    );
}

#[test]
fn cli_target_invalid_url() {
    let err = load_cli(None, &["prod=ftp://x.example"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"command line: targets.prod.url: an absolute http:// or https:// URL, got "ftp://x.example""#
    );
}

/// Regression (issue #12): a FIFO named as a secret file blocked `--check-config` forever,
/// and three reloads reading one froze the server. It is refused at once, no writer needed.
#[test]
fn fifo_as_secret_file_or_config_file_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = crate::secrets::mkfifo(dir.path(), "token-fifo");
    let config = dir.path().join("exporter.toml");
    std::fs::write(
        &config,
        "[targets.prod]\nurl = \"https://glitchtip.example.com\"\n\
         [targets.prod.checks.organizations]\npath = \"/api/0/organizations/\"\n\
         bearer_token = { file = \"token-fifo\" }\n",
    )
    .unwrap();
    assert_eq!(
        load_file(&config).unwrap_err().to_string(),
        format!(
            "config file {}, line 5, column 18: targets.prod.checks.organizations.bearer_token.file: a readable file, cannot read {}: not a regular file but a FIFO",
            config.display(),
            fifo.display()
        )
    );
    assert_eq!(
        load_file(&fifo).unwrap_err().to_string(),
        format!(
            "config file {}: cannot read the file: not a regular file but a FIFO",
            fifo.display()
        )
    );
}

/// The crashes the `config` fuzz target found (fuzz/regressions/config): each config once
/// passed validation and then panicked the exporter; each is now refused, naming the key.
#[test]
fn fuzz_regressions_are_refused_naming_the_key() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let err = load_file(&file).expect_err(&file.display().to_string());
        let message = err.to_string();
        assert!(
            message.contains("a duration from 100ms to 1day"),
            "{}: {message}",
            file.display()
        );
    }
    assert!(seen >= 2, "the regression inputs are there");
}

// ---- the command line ------------------------------------------------------------------

#[tokio::test]
async fn check_config_prints_the_start_up_warnings_and_exits_0() {
    let file = write_toml(
        "[targets.prod]\nurl = \"https://glitchtip.example.com\"\ndefault_checks = false\n[targets.prod.checks.page]\npath = \"/\"\ninterval = \"30s\"\n",
    );
    let (status, stdout, stderr) =
        crate::binary::run_to_end(&["--check-config", "-c", file.path().to_str().unwrap()]).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr,
        "warning: targets.prod.checks.page: from outage to firing alert takes up to 74 s (interval + 2 × timeout + retry_interval + 31 s), over the 60 s alert budget\n"
    );
    assert_eq!(
        stdout,
        "config OK: 1 targets, 1 checks, mode interval, listen 0.0.0.0:10099\n"
    );
}

#[tokio::test]
async fn invalid_log_level_is_an_error_exit_1() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("exporter.toml");
    let (status, stdout, stderr) = crate::binary::run_to_end(&[
        "--log-level",
        "info,[",
        "--check-config",
        "-c",
        path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "error: --log-level: a tracing filter such as \"info\" or \"glitchtip_exporter=debug\", got \"info,[\" (invalid filter directive)\n"
    );
}

#[tokio::test]
async fn usage_error_exits_2_and_bad_config_exits_1() {
    let (status, _, stderr) = crate::binary::run_to_end(&["--no-such-flag"]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    let (status, _, stderr) = crate::binary::run_to_end(&[
        "--check-config",
        "-c",
        fixture("server_mode_bad.toml").to_str().unwrap(),
    ])
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
}

#[test]
fn a_key_set_by_the_environment_is_not_located_in_the_file() {
    // The file's value is overridden: its line would point at a value that is not used.
    let file = write_toml(&format!("[server]\nmode = \"push\"\n{PROD}"));
    let err =
        load_with_env(file.path(), &[("GLITCHTIP_EXPORTER__SERVER__MODE", "pull")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"config file {} with GLITCHTIP_EXPORTER__* environment overrides: server.mode: "interval" or "scrape", got "pull""#,
            file.path().display()
        )
    );
    // Without the override, the file's line.
    let err = load_with_env(file.path(), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"config file {}, line 2, column 1: server.mode: "interval" or "scrape", got "push""#,
            file.path().display()
        )
    );
}
