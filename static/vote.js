// Keyboard shortcuts, load gating and response timing for the comparison page. Without this
// script the page works the same, with buttons, and the server times the response itself.
//
// A vote counts only once both images have loaded: until then the buttons are disabled here
// (not in the HTML, so that the page still works without JavaScript) and keys are ignored.
// A held-down key sends auto-repeat keydowns; those are ignored, so one press is one vote
// and a key still held when the next pair appears does not answer it. The response time
// sent is measured from the moment both images were loaded.
(function () {
  var form = document.getElementById("vote-form");
  if (!form) return;
  var images = [document.getElementById("left-image"), document.getElementById("right-image")];
  var buttons = form.querySelectorAll("button[name=choice]");
  var loadedAt = null;
  var sent = false;

  function setEnabled(enabled) {
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = !enabled;
  }

  function loaded(img) {
    return !img || (img.complete && img.naturalWidth > 0);
  }

  function check() {
    if (loadedAt !== null || sent) return;
    for (var i = 0; i < images.length; i++) {
      // complete with no pixels: it failed before this script was running.
      if (images[i] && images[i].complete && images[i].naturalWidth === 0) return failed();
    }
    if (!loaded(images[0]) || !loaded(images[1])) return;
    loadedAt = performance.now();
    setEnabled(true);
  }

  // An image that did not load was not seen: no answer is taken. The page says so and
  // offers a reload (the server hands out the same pair again).
  function failed() {
    if (loadedAt !== null || sent) return;
    var note = document.getElementById("image-error");
    if (note) note.hidden = false;
  }

  function submit(button) {
    if (sent || loadedAt === null || button.disabled) return;
    sent = true;
    form.elements["response_ms"].value = String(Math.round(performance.now() - loadedAt));
    var choice = document.createElement("input");
    choice.type = "hidden";
    choice.name = "choice";
    choice.value = button.value;
    form.appendChild(choice);
    setEnabled(false);
    form.submit();
  }

  // Marks the form as run by this script (answers wait for the images); without it the
  // buttons are plain HTML.
  form.setAttribute("data-gated", "");
  setEnabled(false);
  for (var i = 0; i < images.length; i++) {
    if (!images[i]) continue;
    images[i].addEventListener("load", check);
    images[i].addEventListener("error", failed);
  }
  check();

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (e.submitter) submit(e.submitter);
  });

  document.addEventListener("keydown", function (e) {
    if (e.repeat || e.altKey || e.ctrlKey || e.metaKey) return;
    for (var i = 0; i < buttons.length; i++) {
      var keys = buttons[i].getAttribute("data-key");
      if (keys && keys.split(" ").indexOf(e.key) >= 0) {
        e.preventDefault();
        submit(buttons[i]);
        return;
      }
    }
  });

  // Coming back with the browser's Back button may restore this page as it was left (sent,
  // buttons disabled); reloading asks the server for the pair that is current now.
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) window.location.reload();
  });
})();
