//! A throwaway PostgreSQL server for the tests that need one, and a fresh
//! database per test on it.
//!
//! `ORDERWATCH_PG_URL` may name an existing server (a URL whose user can
//! create databases); otherwise one cluster per test process is made with
//! Debian's `initdb` (found under /usr/lib/postgresql/*/bin, or
//! `$ORDERWATCH_PG_BIN`) in a temp dir, on a free port of 127.0.0.1, with
//! its socket in that dir and `fsync=off`. As root it runs as the
//! `postgres` user (PostgreSQL refuses to run as root). A watchdog beside
//! it stops it and removes its files once this test process is gone.
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
    start_cluster(&bin)
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

fn start_cluster(bin: &Path) -> Result<String, String> {
    let dir = tempfile::Builder::new()
        .prefix("orderwatch-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        // The watchdog removes it, as its owner, once this process is gone.
        .keep();
    // SAFETY: as in `as_owner`.
    if unsafe { libc::geteuid() } == 0 {
        let ids = |flag: &str| -> Result<u32, String> {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .map_err(|e| e.to_string())?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| "no `postgres` user to run the server as".to_owned())
        };
        std::os::unix::fs::chown(&dir, Some(ids("-u")?), Some(ids("-g")?))
            .map_err(|e| e.to_string())?;
    }
    let data = dir.join("data");
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
    let port = free_port();
    let script = format!(
        "'{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
         >'{dir}/server.log' 2>&1 & server=$!; \
         while [ -d /proc/{parent} ] && kill -0 $server 2>/dev/null; do sleep 1; done; \
         kill -INT $server 2>/dev/null; wait $server; rm -rf '{dir}'",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
        parent = std::process::id(),
    );
    as_owner(Path::new("/bin/sh"))
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("the server does not start: {e}"))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match admin_sql(&url, "SELECT 1") {
            Ok(()) => return Ok(url),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                return Err(format!("the test server did not come up: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
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
