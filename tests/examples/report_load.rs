//! Load generator for members' run reports (`bench/reports.sh`).
//!
//! `report_load setup DIR MEMBERS`: in the deployment DIR/deploy (made by `tenet-keys
//! init`), makes MEMBERS node keys (DIR/nodes/mNNNNN/localhost.key), enrolls them all
//! (the inventory written once, in the format `enroll` writes), and a policy tree
//! DIR/tree naming them.
//!
//! `report_load send DIR ADDR RATE SECONDS MEMBERS`: for SECONDS, RATE reports a second
//! in all, member after member, each on a new mutual-TLS connection with that member's
//! key (as an agent's run does), to the serving socket ADDR; prints the reports sent,
//! their statuses and latencies.
//!
//! `report_load ceiling DIR ADDR SECONDS THREADS MEMBERS`: as fast as THREADS senders
//! can, each report on a new connection; prints reports per second.
//!
//! `report_load page ADDR PATH COUNT`: GET http://ADDR/PATH COUNT times, one after
//! another; prints the latencies.
#![expect(clippy::print_stdout, reason = "a benchmark tool prints its figures")]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark tool writes its files"
)]

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenet_keys::SecretKey;
use tenet_keys::deployment::Deployment;
use tenet_keys::root::Root;
use tenet_keys::tls::{self, Identity, Subject};
use tenet_tests::report_client::{ReportClient, report_body};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: report_load setup DIR MEMBERS | send DIR ADDR RATE SECONDS MEMBERS | ceiling DIR ADDR SECONDS THREADS MEMBERS | page ADDR PATH COUNT";
    let n = |i: usize| -> Result<u64, Error> { Ok(args.get(i).ok_or(usage)?.parse()?) };
    match args.first().map(String::as_str) {
        Some("setup") => setup(Path::new(args.get(1).ok_or(usage)?), n(2)?),
        Some("send") => send(
            Path::new(args.get(1).ok_or(usage)?),
            args.get(2).ok_or(usage)?,
            n(3)?,
            n(4)?,
            n(5)?,
        ),
        Some("ceiling") => ceiling(
            Path::new(args.get(1).ok_or(usage)?),
            args.get(2).ok_or(usage)?,
            n(3)?,
            n(4)?,
            n(5)?,
        ),
        Some("page") => page(args.get(1).ok_or(usage)?, args.get(2).ok_or(usage)?, n(3)?),
        _ => Err(usage.into()),
    }
}

fn name(i: u64) -> String {
    format!("m{i:05}")
}

fn setup(dir: &Path, members: u64) -> Result<(), Error> {
    let deploy = dir.join("deploy");
    let d = Deployment::open(&deploy)?;
    let mut blocks = Vec::new();
    for i in 0..members {
        let key = SecretKey::generate()?;
        let home = dir.join("nodes").join(name(i));
        std::fs::create_dir_all(&home)?;
        key.write(&home.join("localhost.key"))?;
        if i == 0 {
            d.enroll(&name(i), key.key_id())?;
        } else {
            blocks.push(format!(
                "\n[[member]]\nname = \"{}\"\nkeyid = \"{}\"\n",
                name(i),
                key.key_id()
            ));
        }
    }
    // The rest appended at once, in the format `enroll` just wrote for the first.
    let inventory = deploy.join(tenet_keys::deployment::INVENTORY_FILE);
    let mut text = std::fs::read_to_string(&inventory)?;
    if !text.contains(&format!("name = \"{}\"", name(0))) {
        return Err("the inventory does not look as expected".into());
    }
    text.push_str(&blocks.concat());
    std::fs::write(&inventory, text)?;
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree)?;
    let mut cluster = String::from("[cluster]\nname = \"bench\"\n");
    for i in 0..members {
        cluster.push_str(&format!(
            "\n[[member]]\nname = \"{}\"\nhostname = \"{}.example.com\"\naddresses = [{{ ip = \"10.{}.{}.{}\", role = \"boot\" }}]\n",
            name(i),
            name(i),
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
    }
    std::fs::write(tree.join("cluster.toml"), cluster)?;
    std::fs::write(
        tree.join("files.toml"),
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hello\\n\"\nmode = \"0644\"\n",
    )?;
    println!("setup: {members} members enrolled");
    Ok(())
}

/// Each member's TLS configuration, in member order.
fn configs(dir: &Path, members: u64) -> Result<Vec<Arc<rustls::ClientConfig>>, Error> {
    let root = Root::parse(&std::fs::read(dir.join("deploy/root/1.root.toml"))?)?;
    let mut out = Vec::new();
    for i in 0..members {
        let key = SecretKey::read(&dir.join("nodes").join(name(i)).join("localhost.key"))?;
        let id = Identity::new(&key, Subject::Member(name(i)))?;
        let mut c = tls::client_config(&id, root.transport.server_spki.clone())?;
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        out.push(Arc::new(c));
    }
    Ok(out)
}

/// One report of member `i` on a new connection: its status.
fn one(configs: &[Arc<rustls::ClientConfig>], addr: &str, i: u64, n: u64) -> Result<u16, Error> {
    let member = usize::try_from(i % configs.len() as u64)?;
    let mut c = ReportClient::connect(configs[member].clone(), addr)?;
    let failed = u64::from(i.is_multiple_of(10));
    let body = report_body(
        &name(member as u64),
        1_800_000_000 + n,
        1,
        failed,
        "exit code 3",
    );
    Ok(c.post("/v1/report", body.as_bytes())?.status)
}

#[derive(Default)]
struct Tally {
    statuses: Mutex<std::collections::BTreeMap<String, u64>>,
    latencies: Mutex<Vec<Duration>>,
}

impl Tally {
    fn record(&self, result: &Result<u16, Error>, took: Duration) {
        let key = match result {
            Ok(s) => s.to_string(),
            Err(e) => format!("error: {e}"),
        };
        *self.statuses.lock().expect("lock").entry(key).or_default() += 1;
        self.latencies.lock().expect("lock").push(took);
    }

    fn print(&self, what: &str, elapsed: Duration) {
        let mut l = self.latencies.lock().expect("lock").clone();
        l.sort();
        let at = |q: f64| {
            l.get(((l.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or_default()
        };
        let statuses = self.statuses.lock().expect("lock");
        let stored = statuses.get("200").copied().unwrap_or(0);
        println!(
            "{what}: {} reports in {:.1}s = {:.1}/s, {:.1} stored/s; statuses {:?}; latency p50 {:?} p99 {:?} max {:?}",
            l.len(),
            elapsed.as_secs_f64(),
            l.len() as f64 / elapsed.as_secs_f64(),
            stored as f64 / elapsed.as_secs_f64(),
            statuses,
            at(0.5),
            at(0.99),
            l.last().copied().unwrap_or_default()
        );
    }
}

fn send(dir: &Path, addr: &str, rate: u64, seconds: u64, members: u64) -> Result<(), Error> {
    let configs = Arc::new(configs(dir, members)?);
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let total = rate * seconds;
    let start = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (configs, tally, next, addr) = (
                configs.clone(),
                tally.clone(),
                next.clone(),
                addr.to_string(),
            );
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    // Report i is due at i / rate seconds.
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let t = Instant::now();
                    let result = one(&configs, &addr, i, i);
                    tally.record(&result, t.elapsed());
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    tally.print("send", start.elapsed());
    Ok(())
}

fn ceiling(dir: &Path, addr: &str, seconds: u64, threads: u64, members: u64) -> Result<(), Error> {
    let configs = Arc::new(configs(dir, members)?);
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (configs, tally, next, addr) = (
                configs.clone(),
                tally.clone(),
                next.clone(),
                addr.to_string(),
            );
            std::thread::spawn(move || {
                while Instant::now() < end {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let result = one(&configs, &addr, i, 10_000_000 + i);
                    tally.record(&result, t.elapsed());
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    tally.print("ceiling", start.elapsed());
    Ok(())
}

fn page(addr: &str, path: &str, count: u64) -> Result<(), Error> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..count {
        let t = Instant::now();
        let mut tcp = std::net::TcpStream::connect(addr)?;
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
        )?;
        let mut text = Vec::new();
        tcp.read_to_end(&mut text)?;
        times.push(t.elapsed());
        bytes = text.len();
        if !text.starts_with(b"HTTP/1.1 200") {
            return Err(format!(
                "GET {path}: {}",
                String::from_utf8_lossy(&text[..text.len().min(200)])
            )
            .into());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "page {path}: {count} GETs of {bytes} bytes; p50 {:.1}ms p95 {:.1}ms max {:.1}ms",
        ms(times[times.len() / 2]),
        ms(times[(times.len() - 1) * 95 / 100]),
        ms(times[times.len() - 1])
    );
    Ok(())
}
