// The dashboard's only script, served from the binary (no CDN, no inline
// script, so the Content-Security-Policy allows nothing else). Every page
// works without it; it adds the copy button of a newly created key.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const said = button.parentElement.querySelector(".copied");
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
    if (said) said.textContent = "Copied";
  } catch (e) {
    // No clipboard access (an insecure origin, a denied permission): the
    // key stays selected, so Ctrl+C copies it.
    if (said) said.textContent = "Press Ctrl+C to copy the selected key";
  }
});
