//! Records the git revision for `glitchtip_exporter_build_info`: the environment variable
//! `GLITCHTIP_EXPORTER_REVISION` when set (a container build has no `.git`), else git's.

use std::process::Command;

fn main() {
    let revision = std::env::var("GLITCHTIP_EXPORTER_REVISION")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GLITCHTIP_EXPORTER_REVISION={revision}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    println!("cargo:rerun-if-env-changed=GLITCHTIP_EXPORTER_REVISION");
}

fn git_revision() -> Option<String> {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
