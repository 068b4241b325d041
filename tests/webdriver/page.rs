//! What the browser test reads from ArenaXL's participant pages (a snapshot of the
//! comparison or completion page, the hashes of the images as the page fetched them), and
//! polling until a page is in the state the test waits for.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Browser;

/// What the test reads from a page: the comparison, the completion page, or neither.
pub const SNAPSHOT: &str = r#"
const q = (s) => document.querySelector(s);
const text = (s) => (q(s) ? q(s).textContent.trim() : null);
const img = (s) => q(s) ? { src: q(s).src, complete: q(s).complete, width: q(s).naturalWidth } : null;
const aid = q('#vote-form input[name="assignment_id"]');
const refresh = q('meta[http-equiv="refresh"]');
const link = q('#completion-link');
const buttons = Array.from(document.querySelectorAll('#vote-form button'));
return {
  url: location.href,
  ready: document.readyState,
  assignment: aid ? aid.value : null,
  progress: text('#progress'),
  prompt: text('#prompt'),
  left: img('#left-image'),
  right: img('#right-image'),
  buttons: buttons.length,
  enabled: buttons.filter((b) => !b.disabled).length,
  gated: !!q('#vote-form[data-gated]'),
  image_error: !!q('#image-error') && !q('#image-error').hidden,
  code: text('#completion-code'),
  start: !!q('#start'),
  link: link ? link.getAttribute('href') : null,
  refresh: refresh ? refresh.getAttribute('content') : null,
  body: document.body ? document.body.innerText.slice(0, 500) : null,
};
"#;

/// The sha256 of both images' bytes as the browser fetches them.
/// Hashes of the images the page shows, with the random padding chunk (`paDd`) taken out,
/// so they compare with the stored files; and the served lengths, padding included.
pub const IMAGE_HASHES: &str = r#"
const done = arguments[arguments.length - 1];
const strip = (buf) => {
  const b = new Uint8Array(buf), dv = new DataView(buf), parts = [b.slice(0, 8)];
  let o = 8, n = 8;
  while (o + 12 <= b.length) {
    const len = dv.getUint32(o), end = o + 12 + len;
    const type = String.fromCharCode(b[o + 4], b[o + 5], b[o + 6], b[o + 7]);
    if (type !== 'paDd') { parts.push(b.slice(o, end)); n += end - o; }
    o = end;
  }
  const out = new Uint8Array(n);
  let k = 0;
  for (const p of parts) { out.set(p, k); k += p.length; }
  return out;
};
const hash = async (src) => {
  const resp = await fetch(src, { cache: 'force-cache' });
  if (!resp.ok) throw new Error(src + ': ' + resp.status);
  const buf = await resp.arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', strip(buf));
  const hex = Array.from(new Uint8Array(digest)).map((b) => b.toString(16).padStart(2, '0')).join('');
  return [hex, buf.byteLength];
};
Promise.all([hash(document.getElementById('left-image').src), hash(document.getElementById('right-image').src)])
  .then(([[left, left_len], [right, right_len]]) => done({ left, right, left_len, right_len }), (e) => done({ error: String(e) }));
"#;

/// Polls the page until `accept` takes a snapshot (of a document in any loading state).
pub async fn wait_until(browser: &Browser, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    loop {
        if let Ok(snap) = browser.script(SNAPSHOT).await {
            if accept(&snap) {
                return snap;
            }
            last = snap;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last page: {last}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls the page until `accept` takes a snapshot of a fully loaded document.
pub async fn wait_for(browser: &Browser, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    wait_until(browser, what, |s| s["ready"] == "complete" && accept(s)).await
}

pub fn is_comparison(snap: &Value) -> bool {
    snap["assignment"].is_string()
}

pub fn is_completion(snap: &Value) -> bool {
    snap["code"].is_string()
}
