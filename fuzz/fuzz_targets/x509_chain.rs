//! The TLS check's judgement of a presented chain ([`x509::inspect`]): arbitrary DER
//! certificates, leaf first, at fixed instants, against the built-in roots plus a CA made
//! here with rcgen. Nothing panics, and the report is consistent.
//!
//! Input: one byte choosing the server name and the instant, then certificates, each
//! `u16` big-endian length + DER (the last one takes what is left).
//! With `FUZZ_SEED_DIR` set, the start writes seed chains made with this run's CA there.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glitchtip_exporter::checks::TlsReason;
use glitchtip_exporter::net::x509::{TrustRoots, inspect};
use glitchtip_exporter_fuzz::{START_UNIX, x509_seeds};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, ServerName};

const NAMES: [&str; 4] = ["glitchtip.fuzz.test", "other.fuzz.test", "127.0.0.1", "::1"];
const INSTANTS: [u64; 4] = [START_UNIX, 0, 4_102_444_800, 253_402_300_799];
const MAX_CERTS: usize = 8;

fn roots() -> &'static TrustRoots {
    static ROOTS: OnceLock<TrustRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let seeds = x509_seeds();
        let ca = glitchtip_exporter_fuzz::scratch().join("x509-ca.pem");
        std::fs::write(&ca, &seeds.ca_pem).expect("the CA file");
        if let Some(dir) = std::env::var_os("FUZZ_SEED_DIR") {
            for (name, input) in &seeds.inputs {
                let _ = std::fs::write(std::path::Path::new(&dir).join(name), input);
            }
        }
        TrustRoots::load(Some(&ca)).expect("trust roots")
    })
}

fuzz_target!(
    init: {
        roots();
    },
    |data: &[u8]| {
        let Some((&choice, mut rest)) = data.split_first() else {
            return;
        };
        let name = NAMES[usize::from(choice & 3)];
        let now: SystemTime = UNIX_EPOCH + Duration::from_secs(INSTANTS[usize::from(choice >> 2 & 3)]);
        let mut chain = Vec::new();
        while !rest.is_empty() && chain.len() < MAX_CERTS {
            let der = if rest.len() >= 2 && chain.len() + 1 < MAX_CERTS {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let body = &rest[2..];
                let (der, tail) = body.split_at(len.min(body.len()));
                rest = tail;
                der
            } else {
                std::mem::take(&mut rest)
            };
            chain.push(CertificateDer::from(der));
        }
        let server_name = ServerName::try_from(name).expect("a server name");
        let Ok(report) = inspect(&chain, &server_name, roots(), now) else {
            return;
        };
        assert!(report.earliest_presented <= report.leaf_not_after);
        if let Some(verified) = report.earliest_verified {
            assert!(verified <= report.leaf_not_after);
        }
        if report.problem.is_none() {
            assert!(report.earliest_verified.is_some(), "valid without a verified path");
        }
        // What the TLS prober makes of it.
        let reason = report.problem.map_or(TlsReason::None, TlsReason::from);
        let _ = reason.as_str();
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let expiry = report.relied_not_after() as f64 - now_secs;
        assert!(!expiry.is_nan());
        for label in [&report.leaf.subject, &report.leaf.issuer, &report.leaf.serial] {
            let _: String = label.chars().take(64).collect();
        }
        assert_eq!(report.leaf.fingerprint_sha256.len(), 64);
    }
);
