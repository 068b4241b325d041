//! The embedded cluster is shared: with `serve` running on a data dir without
//! `DATABASE_URL`, other commands on the same dir connect to its cluster (never start or
//! stop one), the server keeps answering and sees what they wrote, and SIGTERM still stops
//! the server, which then stops the cluster it started.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn arenaxl(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run arenaxl")
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // Only if the test failed before its own SIGTERM: do not leave a server behind.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` on `data` (no `DATABASE_URL`): the process, its base URL and the embedded
/// cluster's URL it printed.
fn start_serve(data: &Path) -> (Server, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut pg_url, mut base) = (None, None);
    while base.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .expect("serve prints its address");
        if let Some(url) = line.strip_prefix("Embedded Postgres: ") {
            pg_url = Some(url.to_string());
        }
        if let Some(rest) = line.strip_prefix("ArenaXL listening on ") {
            base = rest
                .split_whitespace()
                .next()
                .map(|u| u.trim_end_matches('/').to_string());
        }
    }
    let base = base.expect("address");
    let pg_url = pg_url.expect("serve prints the embedded cluster's URL");
    (server, base, pg_url)
}

#[tokio::test]
async fn other_commands_share_the_running_servers_embedded_cluster() {
    let data = tempfile::tempdir().expect("dir");
    // The cluster runs as `postgres` when the tests run as root: it must reach the folder.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (server, base, pg_url) = start_serve(data.path());
    assert!(
        pg_url.contains("host=") && pg_url.contains("port="),
        "{pg_url}"
    );
    let record = data.path().join("embedded-postgres.json");
    assert!(record.is_file(), "the starting process records its cluster");

    // Other commands on the same data dir, while the server runs.
    ok(
        arenaxl(
            data.path(),
            &[
                "admin",
                "create",
                "--email",
                "op@example.org",
                "--password",
                "operator pass",
            ],
        ),
        "admin create",
    );
    ok(
        arenaxl(
            data.path(),
            &[
                "study",
                "create",
                "--slug",
                "shared",
                "--title",
                "Shared study",
            ],
        ),
        "study create",
    );
    let csv = data.path().join("votes.csv");
    ok(
        arenaxl(
            data.path(),
            &[
                "export",
                "--study",
                "shared",
                "--format",
                "votes-csv",
                "--out",
                &csv.to_string_lossy(),
            ],
        ),
        "export",
    );
    assert!(std::fs::read_to_string(&csv)
        .expect("csv")
        .starts_with("participant_id,"));
    let listed = ok(arenaxl(data.path(), &["study", "list"]), "study list");
    assert!(listed.contains("shared"), "{listed}");
    assert!(record.is_file(), "no other command removed the record");

    // The server still answers, and sees the study the other commands made.
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let page = client
        .get(format!("{base}/admin/login"))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("body");
    let csrf = crate::common::csrf_of(&page);
    let login = client
        .post(format!("{base}/admin/login"))
        .form(&[
            ("email", "op@example.org"),
            ("password", "operator pass"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 303);
    let study = client
        .get(format!("{base}/admin/studies/shared"))
        .send()
        .await
        .expect("study");
    assert_eq!(study.status(), 200);
    assert!(study.text().await.expect("body").contains("Shared study"));

    // SIGTERM ends the server promptly; it stops its own cluster and removes the record.
    let mut server = server;
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let mut exited = None;
    for _ in 0..600 {
        if let Some(status) = server.0.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = exited.expect("serve exits within 60 s of SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!record.exists(), "the owner removes its record");

    assert!(
        !data.path().join("postgres/postmaster.pid").exists(),
        "the cluster stopped"
    );

    // A server killed outright cannot stop its cluster: the next command adopts it, and
    // stops it when it is done.
    let (mut server, _, _) = start_serve(data.path());
    server.0.kill().expect("SIGKILL");
    server.0.wait().expect("reaped");
    assert!(
        data.path().join("postgres/postmaster.pid").exists(),
        "orphaned cluster"
    );
    let listed = ok(arenaxl(data.path(), &["study", "list"]), "study list");
    assert!(listed.contains("shared"), "{listed}");
    assert!(!record.exists(), "the adopter removes the record");
    assert!(
        !data.path().join("postgres/postmaster.pid").exists(),
        "and stops the cluster"
    );
}
