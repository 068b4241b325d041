//! Where the comparison page's parts are on screen, read from their bounding boxes, and the
//! check that a participant sees all of them without scrolling.

use serde_json::Value;

use super::Screen;

/// The viewport and the bounding boxes of what a participant must see without scrolling.
pub const LAYOUT: &str = r#"
const box = (e) => {
  const r = e.getBoundingClientRect();
  return { name: e.id || e.value, left: r.left, top: r.top, right: r.right, bottom: r.bottom };
};
const root = document.documentElement;
return {
  width: window.innerWidth,
  height: window.innerHeight,
  scroll_width: root.scrollWidth,
  scroll_height: root.scrollHeight,
  prompt: box(document.getElementById('prompt')),
  prompt_hidden: document.getElementById('prompt').scrollHeight - document.getElementById('prompt').clientHeight,
  left: box(document.getElementById('left-image')),
  right: box(document.getElementById('right-image')),
  buttons: Array.from(document.querySelectorAll('#vote-form button')).map(box),
};
"#;

/// Asserts that the prompt, both images and every button lie inside the viewport of
/// `screen`, that the images stand side by side and are scaled to the screen, and that
/// the page does not scroll.
pub fn check_layout(layout: &Value, screen: Screen, page: usize) {
    let at = format!("comparison {page} at {}: {layout}", screen.name());
    let num = |v: &Value| v.as_f64().unwrap_or_else(|| panic!("a number in {at}"));
    let (width, height) = (num(&layout["width"]), num(&layout["height"]));
    assert_eq!(
        (width, height),
        (f64::from(screen.width), f64::from(screen.height)),
        "viewport size, {at}"
    );
    assert!(
        num(&layout["scroll_width"]) <= width && num(&layout["scroll_height"]) <= height,
        "the page scrolls, {at}"
    );
    assert!(
        num(&layout["prompt_hidden"]) <= 1.0,
        "part of the prompt is scrolled out of its box, {at}"
    );
    let buttons = layout["buttons"].as_array().expect("buttons");
    assert_eq!(buttons.len(), 4, "left, tie, both bad, right: {at}");
    let mut boxes = vec![&layout["prompt"], &layout["left"], &layout["right"]];
    boxes.extend(buttons);
    // Half a pixel of slack for sub-pixel layout.
    for b in boxes {
        let (l, t, r, bo) = (
            num(&b["left"]),
            num(&b["top"]),
            num(&b["right"]),
            num(&b["bottom"]),
        );
        assert!(
            l >= -0.5 && t >= -0.5 && r <= width + 0.5 && bo <= height + 0.5 && r > l && bo > t,
            "{} is not (wholly) in view: {b}; {at}",
            b["name"]
        );
    }
    let (left, right) = (&layout["left"], &layout["right"]);
    assert!(
        (num(&left["top"]) - num(&right["top"])).abs() < 1.0,
        "the images are not side by side (tops differ), {at}"
    );
    assert!(
        num(&left["right"]) <= num(&right["left"]),
        "the images overlap or are not left and right, {at}"
    );
    for image in [left, right] {
        let (w, h) = (
            num(&image["right"]) - num(&image["left"]),
            num(&image["bottom"]) - num(&image["top"]),
        );
        // The 32 px test images are scaled up to take most of the width or the height.
        assert!(
            w >= 0.4 * width || h >= 0.5 * height,
            "{} is not scaled to the screen ({w:.0}x{h:.0}), {at}",
            image["name"]
        );
    }
}
