// Start a run, follow its progress over server-sent events, cancel it.
(function () {
  "use strict";
  const form = document.getElementById("job-form");
  if (!form) return;
  const csrf = document.querySelector("meta[name='csrf-token']").content;
  const $ = (id) => document.getElementById(id);
  let jobId = null, source = null;

  function show(d) {
    $("job").hidden = false;
    $("job-id").textContent = d.job_id;
    $("job-status").textContent = d.status;
    $("job-stage").textContent = d.stage;
    if (d.fraction === null || d.fraction === undefined) $("job-progress").removeAttribute("value");
    else $("job-progress").value = d.fraction;
    const res = $("job-result");
    res.textContent = "";
    if (d.run_id) {
      const a = document.createElement("a");
      a.href = "/runs/" + d.run_id;
      a.id = "job-run";
      a.textContent = "open run " + d.run_id.slice(0, 8) + (d.reused ? " (identical run already stored)" : "");
      res.appendChild(a);
    } else if (d.error) {
      res.textContent = d.error;
      res.className = "bad";
    }
  }

  async function post(url, body) {
    const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                                body: JSON.stringify(body || {})});
    const d = await r.json();
    if (!r.ok) throw new Error(d.error || r.statusText);
    return d;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const d = await post("/api/jobs", {catalog: $("catalog").value, mc_draws: $("mc-draws").value,
                                         force: $("force").checked});
      jobId = d.job_id;
      show(d);
      $("start").disabled = true;
      $("cancel").disabled = false;
      source = new EventSource("/api/jobs/" + jobId + "/events");
      const on = (e) => {
        const x = JSON.parse(e.data);
        show(x);
        if (x.kind === "finished") {
          source.close();
          $("start").disabled = false;
          $("cancel").disabled = true;
        }
      };
      for (const k of ["started", "progress", "finished"]) source.addEventListener(k, on);
    } catch (e) {
      $("job").hidden = false;
      $("job-result").textContent = e.message;
      $("job-result").className = "bad";
    }
  });

  $("cancel").addEventListener("click", async () => {
    if (!jobId) return;
    try { show(await post("/api/jobs/" + jobId + "/cancel")); } catch (e) { $("job-result").textContent = e.message; }
  });
})();
