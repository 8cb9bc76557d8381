// A fingerprinted asset: the hex part of its name changes whenever its content
// does, so it is served with `Cache-Control: public, max-age=31536000, immutable`.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("script-status");
  if (status) {
    status.textContent = "The fingerprinted script ran.";
  }
});
