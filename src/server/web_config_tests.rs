use std::path::Path;

use super::*;

const PASSWORD: &str = "correct horse battery staple";

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let dir = Dir(tempfile::tempdir().unwrap());
        let ca = rcgen::CertificateParams::new(vec![]).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = ca;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        dir.write("server.crt", &leaf.pem());
        dir.write("server.key", &leaf_key.serialize_pem());
        dir.write("other.key", &other_key.serialize_pem());
        dir.write("ca.crt", &ca_cert.pem());
        dir
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.path().join(name), text).unwrap();
    }

    fn load(&self, yaml: &str) -> Result<WebConfig, String> {
        self.write("web.yml", yaml);
        load(&self.0.path().join("web.yml")).map_err(|e| {
            e.to_string()
                .replace(&self.0.path().display().to_string(), "DIR")
        })
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn hash() -> String {
    // Cost 4, the least bcrypt allows: the tests verify, they do not measure.
    bcrypt::hash(PASSWORD, 4).unwrap()
}

#[test]
fn an_empty_file_protects_nothing() {
    let dir = Dir::new();
    let config = dir.load("").unwrap();
    assert!(config.tls.is_none() && config.users.is_none());
}

#[test]
fn tls_and_users_are_read() {
    let dir = Dir::new();
    let config = dir
        .load(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS13\nbasic_auth_users:\n  prometheus: {}\n",
            hash()
        ))
        .unwrap();
    assert!(config.tls.is_some());
    let users = config.users.unwrap();
    assert!(users.verify("prometheus", PASSWORD));
    // Remembered, and still right.
    assert!(users.verify("prometheus", PASSWORD));
    assert!(!users.verify("prometheus", "wrong"));
    assert!(!users.verify("nobody", PASSWORD));
    assert!(!users.verify("", ""));
}

macro_rules! refused {
    ($name:ident, $yaml:expr, $expected:expr) => {
        #[test]
        fn $name() {
            let dir = Dir::new();
            assert_eq!(dir.load($yaml).unwrap_err(), $expected);
        }
    };
}

refused!(
    a_missing_certificate,
    "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
    "DIR/web.yml: tls_server_config.cert_file: a readable file, cannot read DIR/missing.crt: No such file or directory (os error 2)"
);
refused!(
    a_key_that_does_not_match,
    "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
    "DIR/web.yml: tls_server_config.key_file: the private key of the certificate in cert_file, \
     it does not match the certificate"
);
refused!(
    tls_1_0,
    "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n",
    "DIR/web.yml: tls_server_config.min_version: TLS12 or TLS13: TLS 1.0 and 1.1 are broken and not offered"
);
refused!(
    an_unknown_key,
    "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  ciphers: x\n",
    "DIR/web.yml: tls_server_config.ciphers: an unknown key; expected cert_file, key_file, min_version, max_version, client_auth_type or client_ca_file"
);
refused!(
    an_unknown_top_level_key,
    "tls_config: {}\n",
    "DIR/web.yml: tls_config: an unknown key; expected tls_server_config or basic_auth_users"
);
refused!(
    mutual_tls_without_a_ca,
    "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
    "DIR/web.yml: tls_server_config.client_ca_file: to be set when client_auth_type verifies client certificates"
);
refused!(
    not_yaml,
    "tls_server_config: [\n",
    "DIR/web.yml: valid YAML (line 1, column 20)"
);

#[test]
fn a_malformed_hash_is_refused_without_repeating_it() {
    let dir = Dir::new();
    for value in ["hunter2-plaintext", "$2y$10$short", "123456"] {
        let err = dir
            .load(&format!("basic_auth_users:\n  alice: {value}\n"))
            .unwrap_err();
        assert_eq!(
            err,
            "DIR/web.yml: basic_auth_users.alice: a bcrypt hash ($2a$, $2b$ or $2y$, cost and 53 characters, as made by htpasswd -nBC 10 USER)"
        );
        assert!(!err.contains(value));
    }
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = Dir::new();
    let fifo = dir.path().join("fifo.crt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = dir
        .load("tls_server_config:\n  cert_file: fifo.crt\n  key_file: server.key\n")
        .unwrap_err();
    assert_eq!(
        err,
        "DIR/web.yml: tls_server_config.cert_file: a regular file, DIR/fifo.crt is not one"
    );
}

#[test]
fn debug_output_names_users_but_no_hash() {
    let dir = Dir::new();
    let hash = hash();
    let config = dir
        .load(&format!("basic_auth_users:\n  prometheus: {hash}\n"))
        .unwrap();
    let shown = format!("{config:?}");
    assert!(shown.contains("prometheus"));
    assert!(!shown.contains(&hash));
}

refused!(
    a_bcrypt_cost_that_would_take_a_day,
    "basic_auth_users:\n  alice: $2y$31$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui\n",
    "DIR/web.yml: basic_auth_users.alice: a bcrypt hash of cost 4 to 16"
);
