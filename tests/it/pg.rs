//! A throwaway PostgreSQL server for the tests that need one, and a fresh
//! database per test on it.
//!
//! `ORDERWATCH_PG_URL` may name an existing server (a URL whose user can
//! create databases); otherwise one cluster per test process is made with
//! Debian's `initdb` (found under /usr/lib/postgresql/*/bin, or
//! `$ORDERWATCH_PG_BIN`) in a temp dir, on a free port of 127.0.0.1, with
//! its socket in that dir and `fsync=off`. As root it runs as the
//! `postgres` user (PostgreSQL refuses to run as root). A watchdog beside
//! it stops it and removes its files once this test process is gone. A
//! test that stops the server, or starts it with other settings, gets a
//! cluster of its own the same way ([`private_cluster`]).
//!
//! Without either, the tests that need it say they are skipped, unless
//! `ORDERWATCH_PG_TESTS=1` (as `.ci/run` sets it), which makes that a
//! failure.

use crate::helpers::skipped;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The admin URL of the server the tests use, once found or started.
static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The URL of a new, empty database for `test`; `None` (said as a skip)
/// without a server, unless the server is required.
pub fn fresh_database(test: &str) -> Option<String> {
    let admin = match SERVER.get_or_init(find_or_start) {
        Ok(url) => url.clone(),
        Err(why) => {
            no_server(test, why);
            return None;
        }
    };
    let name = format!(
        "ow_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    admin_sql(&admin, &format!("CREATE DATABASE {name}")).expect("create a test database");
    let mut url = url::Url::parse(&admin).expect("the admin URL parses");
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

/// `test` skipped for want of a server, or failed when one is required.
fn no_server(test: &str, why: &str) {
    assert!(
        std::env::var("ORDERWATCH_PG_TESTS").as_deref() != Ok("1"),
        "ORDERWATCH_PG_TESTS=1 but no PostgreSQL for the tests: {why}"
    );
    skipped(
        test,
        &format!(
            "{why} (apt-get install postgresql, or set ORDERWATCH_PG_URL; ORDERWATCH_PG_TESTS=1 makes this a failure)"
        ),
    );
}

/// Run `sql` as the admin of the test server.
pub fn admin_sql(admin: &str, sql: &str) -> Result<(), String> {
    sql_at(admin, sql)
}

/// Run `sql` on the database at `url` (the tests' own look at the tables).
pub fn sql_at(url: &str, sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    on_database(url, move |client| async move {
        client.batch_execute(&sql).await.map_err(|e| e.to_string())
    })
}

/// One number from a query on the database at `url`.
pub fn count_at(url: &str, sql: &str) -> i64 {
    try_count_at(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// [`count_at`], or why not (a table not made yet).
pub fn try_count_at(url: &str, sql: &str) -> Result<i64, String> {
    let sql = sql.to_owned();
    on_database(url, move |client| async move {
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, i64>(0))
    })
}

/// `work` with a client of the database at `url`, on its own thread and
/// runtime: callers may be inside a runtime already.
fn on_database<T, F, Fut>(url: &str, work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            work(client).await
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_owned())?
}

fn find_or_start() -> Result<String, String> {
    if let Ok(url) = std::env::var("ORDERWATCH_PG_URL") {
        return Ok(url);
    }
    let bin = bin_dir().ok_or("no PostgreSQL server binaries (initdb) found")?;
    // Never dropped: the watchdog removes it once this process is gone.
    let cluster = std::mem::ManuallyDrop::new(Cluster::create(&bin)?);
    Ok(cluster.url())
}

/// The newest `/usr/lib/postgresql/*/bin` with `initdb`, or `$ORDERWATCH_PG_BIN`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ORDERWATCH_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| d.join("initdb").is_file());
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `program args` as the `postgres` user when this process is root.
fn as_owner(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // util-linux puts it in /usr/sbin (or /sbin), which a PATH may lack.
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or("runuser");
        let mut cmd = Command::new(runuser);
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A cluster of the tests' own: made with `initdb` in a temp dir, served
/// on a free port of 127.0.0.1 (its socket in that dir, `fsync=off`),
/// started and stopped with `pg_ctl`. A watchdog beside it stops it and
/// removes its files once this test process is gone, or once the dir is.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// A new cluster, started; its admin is `postgres`, trusted.
    fn create(bin: &Path) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("orderwatch-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            // The watchdog (or `Drop`) removes it, as its owner.
            .keep();
        // SAFETY: as in `as_owner`.
        if unsafe { libc::geteuid() } == 0 {
            let (uid, gid) = (owner_id("-u")?, owner_id("-g")?);
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let cluster = Cluster {
            bin: bin.to_owned(),
            dir,
            port: free_port(),
        };
        let data = cluster.data();
        let init = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| format!("initdb does not run: {e}"))?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        cluster.configure(&format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
            port = cluster.port,
            dir = cluster.dir.display(),
        ))?;
        let script = format!(
            "while [ -d /proc/{parent} ] && [ -d '{data}' ]; do sleep 1; done; \
             '{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
            pg_ctl = bin.join("pg_ctl").display(),
            data = data.display(),
            dir = cluster.dir.display(),
            parent = std::process::id(),
        );
        as_owner(Path::new("/bin/sh"))
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("the watchdog does not start: {e}"))?;
        cluster.start()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The admin's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `lines` added to its `postgresql.conf`, read at the next start.
    pub fn configure(&self, lines: &str) -> Result<(), String> {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(format!("\n{lines}\n").as_bytes()))
            .map_err(|e| format!("postgresql.conf: {e}"))
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        self.pg_ctl(&["start", "-w", "-t", "60", "-l"])?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match admin_sql(&self.url(), "SELECT 1") {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "the test server did not come up: {e}\n{}",
                        self.log()
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `pg_ctl stop -m fast`: sessions cut, a clean shutdown.
    pub fn stop(&self) -> Result<(), String> {
        self.pg_ctl(&["stop", "-w", "-t", "60", "-m", "fast"])
    }

    /// Served with TLS from now on (`ssl = on`, restarted), with this
    /// certificate and key (PEM).
    pub fn serve_tls(&self, cert: &str, key: &str) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let (cert_file, key_file) = (self.dir.join("server.crt"), self.dir.join("server.key"));
        for (path, pem) in [(&cert_file, cert), (&key_file, key)] {
            std::fs::write(path, pem).map_err(|e| e.to_string())?;
            // The server refuses a key others can read.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            // SAFETY: as in `as_owner`.
            if unsafe { libc::geteuid() } == 0 {
                std::os::unix::fs::chown(path, Some(owner_id("-u")?), Some(owner_id("-g")?))
                    .map_err(|e| e.to_string())?;
            }
        }
        self.configure(&format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            cert_file.display(),
            key_file.display()
        ))?;
        self.stop()?;
        self.start()
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// `pg_ctl -D data ARGS`; `-l` last in `args` takes the log file.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = as_owner(&self.bin.join("pg_ctl"));
        cmd.arg("-D").arg(self.data()).args(args);
        if args.last() == Some(&"-l") {
            cmd.arg(self.dir.join("server.log"));
        }
        let out = cmd
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl does not run: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {args:?} failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ))
        }
    }
}

/// A cluster of its own for one test (one that stops or reconfigures the
/// server, which would break the tests sharing the other): stopped and
/// removed when dropped. `None` (said as a skip) as [`fresh_database`].
pub fn private_cluster(test: &str) -> Option<Cluster> {
    let made = bin_dir()
        .ok_or_else(|| "no PostgreSQL server binaries (initdb) found".to_owned())
        .and_then(|bin| Cluster::create(&bin));
    match made {
        Ok(cluster) => Some(cluster),
        Err(why) => {
            no_server(test, &why);
            None
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-w", "-m", "immediate"]);
        // Its files belong to `postgres`; root may remove them, and so may
        // the watchdog, which stops once they are gone.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `postgres` user's uid (`-u`) or gid (`-g`).
fn owner_id(flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "no `postgres` user to run the server as".to_owned())
}

/// A TCP proxy in front of the test server that a test can cut and
/// restore: the database going away under a running orderwatch (and
/// coming back) without stopping the server the other tests share.
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy to the server of `url`; `url_through` gives the URL via it.
    pub async fn start(url: &str) -> Proxy {
        let parsed = url::Url::parse(url).expect("the database URL parses");
        let upstream = format!(
            "{}:{}",
            parsed.host_str().expect("a host"),
            parsed.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("its address").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                open2.lock().unwrap().push(task);
            }
        });
        Proxy { port, up, open }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("the database URL parses");
        parsed.set_host(Some("127.0.0.1")).expect("a host");
        parsed.set_port(Some(self.port)).expect("a port");
        parsed.to_string()
    }

    /// Drop every connection, and refuse new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
