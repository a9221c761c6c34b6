//! A real PostgreSQL for the tests: Debian's server binaries (`scripts/test-all.sh`
//! installs the `postgresql` package), one cluster in a temporary folder on 127.0.0.1 with
//! a port chosen at run time, shared by the tests that run at the same time and stopped
//! (by its PID) when the last of them lets it go. Each test gets a database and roles of
//! its own. As root the server runs as user `postgres` (PostgreSQL refuses root).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::queue::free_port;

/// The superuser's password (TCP connections use SCRAM).
const ADMIN_PASSWORD: &str = "pg-admin-pw-41c7";
/// The DDL of django-vtasks' database backend.
pub(crate) const VTASKS_DDL: &str = include_str!("../fixtures/vtasks/db-backend.sql");

/// The running cluster; dropped (stopped) with the last test that holds it.
pub(crate) struct Cluster {
    child: Child,
    pub(crate) port: u16,
    /// The CA that signed the server's certificate (for 127.0.0.1): TLS is on, and
    /// optional for clients.
    pub(crate) ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The folder of `initdb` and `postgres`: `$PG_BIN`, else the newest
/// /usr/lib/postgresql/*/bin, else the `PATH`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| PathBuf::from(""))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program` run as user postgres when root (setpriv execs: the child's PID is the
/// program's).
fn command(program: &str) -> Command {
    let path = bin_dir().join(program);
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(path);
        c
    } else {
        Command::new(path)
    }
}

impl Cluster {
    /// The running cluster, started when none runs; ready to take connections.
    pub(crate) async fn shared() -> Arc<Cluster> {
        let cluster = {
            let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
            match slot.upgrade() {
                Some(c) => c,
                None => {
                    let c = Arc::new(Self::start());
                    *slot = Arc::downgrade(&c);
                    c
                }
            }
        };
        for _ in 0..600 {
            if cluster.try_admin("postgres").await.is_ok() {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("postgres on port {} did not come up", cluster.port);
    }

    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, ADMIN_PASSWORD).unwrap();
        let (ca_pem, cert_pem, key_pem) = server_pki();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        std::fs::write(dir.path().join("server.crt"), cert_pem).unwrap();
        let key_file = dir.path().join("server.key");
        std::fs::write(&key_file, key_pem).unwrap();
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let out = command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--no-sync", "--locale=C"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb (scripts/test-all.sh installs the postgresql package)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Members of role tls_only may connect over TLS only: a test proves TLS is used.
        let hba = data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("hostnossl all +tls_only all reject\n{rules}")).unwrap();
        let port = free_port();
        let child = command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=100", "-c", "logging_collector=off"])
            .args(["-c", "ssl=on", "-c"])
            .arg(format!(
                "ssl_cert_file={}",
                dir.path().join("server.crt").display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key_file.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        Self {
            child,
            port,
            ca_file,
            _dir: dir,
        }
    }

    async fn try_admin(&self, db: &str) -> Result<tokio_postgres::Client, String> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| e.to_string())?;
        let (client, conn) = tokio_postgres::Config::new()
            .user("postgres")
            .password(ADMIN_PASSWORD)
            .dbname(db)
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// A superuser connection to `db`.
    pub(crate) async fn admin(&self, db: &str) -> tokio_postgres::Client {
        self.try_admin(db).await.unwrap()
    }

    /// A new database of this test's own, with django-vtasks' tables when `tables`, and
    /// a role `exporter_<n>` (password `password`) allowed to SELECT them — the README's
    /// GRANT recipe. Answers (database, role).
    pub(crate) async fn database(&self, tables: bool, password: &str) -> (String, String) {
        let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
        let db = format!("vt_{n}_{}", std::process::id());
        let role = format!("exporter_{n}_{}", std::process::id());
        let admin = self.admin("postgres").await;
        for sql in [
            format!("CREATE DATABASE {db}"),
            format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
        let c = self.admin(&db).await;
        if tables {
            c.batch_execute(VTASKS_DDL).await.unwrap();
        }
        c.batch_execute(&readme_grants(&db, &role, tables))
            .await
            .unwrap();
        (db, role)
    }
}

/// The README's recipe for a read-only role (the role exists already); the table grant
/// only where the tables exist.
pub(crate) fn readme_grants(db: &str, role: &str, tables: bool) -> String {
    let mut sql = format!(
        "GRANT CONNECT ON DATABASE {db} TO {role};\n\
         GRANT USAGE ON SCHEMA public TO {role};\n\
         ALTER ROLE {role} SET default_transaction_read_only = on;\n"
    );
    if tables {
        sql.push_str(&format!(
            "GRANT SELECT ON db_queuedtask, db_vtaskmetadata TO {role};\n"
        ));
    }
    sql
}

/// A CA and a server certificate for 127.0.0.1 it signed: (CA, certificate, key) in PEM.
fn server_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "glitchtip-exporter postgres CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT): the server ends its backends and exits.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
