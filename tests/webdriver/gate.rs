//! A local HTTP/1.1 proxy in front of the app that can hold image requests (`/img/…`) back
//! until the test releases them, so the test can act on a comparison page whose images have
//! not arrived yet, as on a slow connection, or fail them (503), as a broken connection. Every other request passes straight through,
//! headers (cookies included) and bodies unchanged; redirects are passed back, not followed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Request headers not forwarded: they describe this hop, not the request.
const HOP_HEADERS: [&str; 6] = [
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
    "proxy-connection",
];

pub struct ImageGate {
    address: String,
    held: watch::Sender<bool>,
    waiting: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ImageGate {
    /// Listens on a free local port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> ImageGate {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the image gate");
        let address = format!("http://{}", listener.local_addr().expect("gate address"));
        let (held, _) = watch::channel(false);
        let waiting = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("gate HTTP client");
        let (upstream, gate, count) = (upstream.to_string(), held.clone(), waiting.clone());
        let fail = failing.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream) = (client.clone(), upstream.clone());
                let (held, waiting, failing) = (gate.subscribe(), count.clone(), fail.clone());
                tokio::spawn(async move {
                    // A broken connection only ends that connection; the browser retries.
                    let _ = serve(stream, client, upstream, held, waiting, failing).await;
                });
            }
        });
        ImageGate {
            address,
            held,
            waiting,
            failing,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// From now on image requests wait until `release`.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// While on, image requests are answered 503 without reaching the app.
    pub fn fail_images(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// How many image requests are being held right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl Drop for ImageGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    client: reqwest::Client,
    upstream: String,
    mut held: watch::Receiver<bool>,
    waiting: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return Ok(());
        };
        let (method, path) = (method.to_string(), path.to_string());
        let mut headers = Vec::new();
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
            match name.as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
            if !HOP_HEADERS.contains(&name.as_str()) {
                headers.push((name, value));
            }
        }
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await?;

        if path.starts_with("/img/") && *held.borrow() {
            waiting.fetch_add(1, Ordering::SeqCst);
            let released = held.wait_for(|h| !*h).await.is_ok();
            waiting.fetch_sub(1, Ordering::SeqCst);
            if !released {
                return Ok(());
            }
        }

        if path.starts_with("/img/") && failing.load(Ordering::SeqCst) {
            let out = stream.get_mut();
            out.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await?;
            out.flush().await?;
            continue;
        }

        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| std::io::Error::other(format!("method {method}: {e}")))?;
        let mut req = client.request(method, format!("{upstream}{path}"));
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let resp = req.body(body).send().await.map_err(std::io::Error::other)?;
        let status = resp.status();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        for (name, value) in resp.headers() {
            if HOP_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let value = value.to_str().map_err(std::io::Error::other)?;
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let bytes = resp.bytes().await.map_err(std::io::Error::other)?;
        head.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
        let out = stream.get_mut();
        out.write_all(head.as_bytes()).await?;
        out.write_all(&bytes).await?;
        out.flush().await?;
        if close {
            return Ok(());
        }
    }
}
