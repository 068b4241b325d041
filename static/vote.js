// Keyboard shortcuts and response timing for the comparison page. Without this script the
// page works the same, with buttons, and the server times the response itself.
(function () {
  var form = document.getElementById("vote-form");
  if (!form) return;
  var shown = performance.now();
  var sent = false;
  function submit(button) {
    if (sent) return;
    sent = true;
    form.elements["response_ms"].value = String(Math.round(performance.now() - shown));
    var choice = document.createElement("input");
    choice.type = "hidden";
    choice.name = "choice";
    choice.value = button.value;
    form.appendChild(choice);
    form.submit();
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (e.submitter) submit(e.submitter);
  });
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    var buttons = form.querySelectorAll("button[data-key]");
    for (var i = 0; i < buttons.length; i++) {
      if (buttons[i].dataset.key.split(" ").indexOf(e.key) >= 0) {
        e.preventDefault();
        submit(buttons[i]);
        return;
      }
    }
  });
})();
