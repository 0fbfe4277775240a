// Says on the page when per-second numbers are not reaching the database: the server keeps them
// in its journal meanwhile (see moodlens.journal) and /healthz tells how many wait.
(() => {
  const banner = document.createElement("p");
  banner.id = "storage";
  banner.className = "error hidden";
  banner.setAttribute("role", "status");
  document.querySelector("main").prepend(banner);

  async function check() {
    let text = "";
    try {
      const health = await (await fetch("/healthz", { cache: "no-store" })).json();
      const behind = health.storage ? health.storage.behind : 0;
      if (health.database !== "ok") {
        text = `The database is unavailable; ${behind} seconds of numbers are kept on the server ` +
          "and will be stored when it is back.";
      } else if (behind) {
        text = `Storage is behind: ${behind} seconds of numbers wait to be written to the database.`;
      }
    } catch (e) {
      text = "The server does not answer.";
    }
    banner.textContent = text;
    banner.classList.toggle("hidden", !text);
  }

  check();
  setInterval(check, 3000);
})();
