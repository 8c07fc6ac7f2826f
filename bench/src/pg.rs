//! The PostgreSQL server the postgres column runs on, and what the bench
//! reads of it: a fresh database per measurement, the server's CPU time,
//! its WAL and, with `--pg-top`, the statements that took the time.
//!
//! `ORDERWATCH_PG_URL` may name an existing server (a URL whose user can
//! create databases); otherwise a throwaway cluster is made with Debian's
//! `initdb` (under /usr/lib/postgresql/*/bin, or `$ORDERWATCH_PG_BIN`) in a
//! temp dir, on a free port of 127.0.0.1, as the `postgres` user when the
//! bench runs as root. Unlike the tests' cluster it keeps PostgreSQL's
//! durable defaults (`fsync`, `synchronous_commit`, `full_page_writes` on):
//! every commit waits for its WAL to reach the disk, as in production; it
//! times those waits (`track_wal_io_timing`), which the bench reports. A
//! watchdog beside it stops it and removes its files once the bench is gone.

use crate::{clock_ticks, proc_cpu_ticks};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

pub struct Server {
    /// The admin URL (database `postgres`, or the one `ORDERWATCH_PG_URL` names).
    admin: String,
    admin_client: tokio_postgres::Client,
    /// The postmaster, when it runs on this machine and /proc shows it:
    /// its CPU and that of its children are the server's.
    postmaster: Option<u32>,
    /// Whether pg_stat_statements can be read.
    statements: bool,
    /// Stopped on drop: the cluster this bench started.
    own: Option<u32>,
    pub description: String,
}

/// What the server had done at one moment: CPU ticks of the postmaster
/// and all its processes (those gone included), and its WAL.
#[derive(Clone, Copy, Default)]
pub struct Counters {
    cpu_ticks: Option<u64>,
    wal_bytes: f64,
    wal_syncs: i64,
    wal_sync_ms: f64,
}

/// The server's work between two [`Counters`].
pub struct Work {
    pub cpu: Option<Duration>,
    pub wal_bytes: u64,
    pub wal_syncs: i64,
    /// Time spent in the WAL's fsyncs (0 where `track_wal_io_timing` is off).
    pub wal_sync_time: Duration,
}

impl Server {
    pub async fn start() -> anyhow::Result<Server> {
        let (admin, own, description) = match std::env::var("ORDERWATCH_PG_URL") {
            Ok(url) => (url, None, "the server of ORDERWATCH_PG_URL".to_owned()),
            Err(_) => {
                let bin = bin_dir().context(
                    "no PostgreSQL server binaries (initdb) found: install postgresql, or set ORDERWATCH_PG_URL or ORDERWATCH_PG_BIN",
                )?;
                let (url, pid) = start_cluster(&bin).await?;
                let version = bin
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|v| v.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    url,
                    Some(pid),
                    format!(
                        "a throwaway PostgreSQL {version} cluster started by the bench (fsync on, synchronous_commit on, the defaults otherwise)"
                    ),
                )
            }
        };
        let admin_client = connect(&admin).await?;
        let backend: i32 = admin_client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        // A backend's parent is the postmaster: readable only on this machine.
        let postmaster = proc_ppid(backend as u32).filter(|p| proc_cpu_ticks(*p).is_some());
        let statements = admin_client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .is_ok()
            && admin_client
                .batch_execute("SELECT pg_stat_statements_reset()")
                .await
                .is_ok();
        Ok(Server {
            admin,
            admin_client,
            postmaster,
            statements,
            own,
            description,
        })
    }

    /// The URL of a new, empty database `name` (dropped first if it exists).
    pub async fn fresh_database(&self, name: &str) -> anyhow::Result<String> {
        // Two statements: a batch of both would be one transaction, which
        // DROP DATABASE refuses.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            self.admin_client
                .batch_execute(&sql)
                .await
                .with_context(|| format!("cannot create the database {name}"))?;
        }
        let mut url = reqwest::Url::parse(&self.admin).context("the admin URL")?;
        url.set_path(&format!("/{name}"));
        Ok(url.to_string())
    }

    pub fn counts_cpu(&self) -> bool {
        self.postmaster.is_some()
    }

    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let row = self
            .admin_client
            .query_one(
                "SELECT wal_bytes::float8, wal_sync, wal_sync_time FROM pg_stat_wal",
                &[],
            )
            .await?;
        Ok(Counters {
            cpu_ticks: self.postmaster.and_then(server_ticks),
            wal_bytes: row.get(0),
            wal_syncs: row.get(1),
            wal_sync_ms: row.get(2),
        })
    }

    /// Wait (up to 5 s) until no client is connected to `database`: the
    /// backends of a finished `orderwatch` exit, and are reaped into the
    /// postmaster's children's CPU, shortly after it disconnects.
    pub async fn settle(&self, database: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let left: i64 = match self
                .admin_client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                      WHERE datname = $1 AND backend_type = 'client backend'",
                    &[&database],
                )
                .await
            {
                Ok(row) => row.get(0),
                Err(_) => return,
            };
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The reaping itself follows the exit.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    pub fn work(before: &Counters, after: &Counters) -> Work {
        let ticks = clock_ticks() as f64;
        Work {
            cpu: match (before.cpu_ticks, after.cpu_ticks) {
                (Some(a), Some(b)) => {
                    Some(Duration::from_secs_f64(b.saturating_sub(a) as f64 / ticks))
                }
                _ => None,
            },
            wal_bytes: (after.wal_bytes - before.wal_bytes).max(0.0) as u64,
            wal_syncs: after.wal_syncs - before.wal_syncs,
            wal_sync_time: Duration::from_secs_f64(
                (after.wal_sync_ms - before.wal_sync_ms).max(0.0) / 1000.0,
            ),
        }
    }

    /// Forget the statements seen so far (`--pg-top`).
    pub async fn reset_statements(&self) {
        if self.statements {
            let _ = self
                .admin_client
                .batch_execute("SELECT pg_stat_statements_reset()")
                .await;
        }
    }

    /// The `n` statements on `database` that took the most time since the
    /// last reset: calls, total ms, rows, the query (shortened).
    pub async fn top_statements(&self, database: &str, n: usize) -> Vec<String> {
        if !self.statements || n == 0 {
            return Vec::new();
        }
        let rows = self
            .admin_client
            .query(
                "SELECT s.calls, s.total_exec_time, s.rows, \
                        left(regexp_replace(s.query, '\\s+', ' ', 'g'), 160) \
                   FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                  WHERE d.datname = $1 ORDER BY s.total_exec_time DESC LIMIT $2",
                &[&database, &(n as i64)],
            )
            .await
            .unwrap_or_default();
        rows.iter()
            .map(|r| {
                let calls: i64 = r.get(0);
                let ms: f64 = r.get(1);
                let rows: i64 = r.get(2);
                let query: String = r.get(3);
                format!("{ms:9.1} ms {calls:7} calls {rows:8} rows  {query}")
            })
            .collect()
    }

    /// The size of `database` in bytes.
    pub async fn database_size(&self, database: &str) -> Option<u64> {
        let row = self
            .admin_client
            .query_one("SELECT pg_database_size($1)", &[&database])
            .await
            .ok()?;
        u64::try_from(row.get::<_, i64>(0)).ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(pid) = self.own {
            // SIGINT is the fast shutdown; the watchdog then removes the files.
            // SAFETY: a plain syscall on the postmaster this bench started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .context("cannot connect to the PostgreSQL server")?;
    tokio::spawn(conn);
    Ok(client)
}

/// CPU ticks of the postmaster, its live children and its reaped ones
/// (cutime + cstime): the whole server's CPU so far.
fn server_ticks(postmaster: u32) -> Option<u64> {
    let own = proc_stat(postmaster)?;
    let mut total = own.utime + own.stime + own.cutime + own.cstime;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(s) = proc_stat(pid)
            && s.ppid == postmaster
        {
            total += s.utime + s.stime;
        }
    }
    Some(total)
}

struct Stat {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

fn proc_stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        ppid: num(1)? as u32,
        utime: num(11)?,
        stime: num(12)?,
        cutime: num(13)?,
        cstime: num(14)?,
    })
}

fn proc_ppid(pid: u32) -> Option<u32> {
    proc_stat(pid).map(|s| s.ppid)
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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `program` as the `postgres` user when the bench is root (PostgreSQL
/// refuses to run as root).
fn as_owner(program: &Path) -> Command {
    if is_root() {
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

/// Start the cluster: its admin URL and the postmaster's pid.
async fn start_cluster(bin: &Path) -> anyhow::Result<(String, u32)> {
    let dir = tempfile::Builder::new()
        .prefix("orderwatch-bench-pg-")
        .tempdir()?
        // The watchdog removes it, as its owner, once the bench is gone.
        .keep();
    if is_root() {
        let id = |flag: &str| -> anyhow::Result<u32> {
            let out = Command::new("id").args([flag, "postgres"]).output()?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .context("no `postgres` user to run the server as")
        };
        std::os::unix::fs::chown(&dir, Some(id("-u")?), Some(id("-g")?))?;
    }
    let data = dir.join("data");
    // --no-sync is initdb's own writes only; the server keeps fsync on.
    let init = as_owner(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .context("initdb does not run")?;
    if !init.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&init.stderr));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let script = format!(
        "'{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
         -c shared_preload_libraries=pg_stat_statements -c track_wal_io_timing=on \
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("the server does not start")?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio_postgres::connect(&url, NoTls).await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                bail!("the PostgreSQL server did not come up: {e}\n{log}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let pid = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse().ok())
        .context("no postmaster.pid")?;
    Ok((url, pid))
}
