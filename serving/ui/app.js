/* JobCare report page: vanilla JS, no dependencies. Calls the service's JSON API (same origin), draws its
   charts as inline SVG, writes text with textContent only (never as markup). */
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const RIASEC = [
    ["R", "현실형", "Realistic"], ["I", "탐구형", "Investigative"], ["A", "예술형", "Artistic"],
    ["S", "사회형", "Social"], ["E", "진취형", "Enterprising"], ["C", "관습형", "Conventional"],
  ];
  const WORK_VALUES = [
    ["achievement", "성취", "Achievement"], ["working_conditions", "근무조건", "Working conditions"],
    ["recognition", "인정", "Recognition"], ["relationships", "관계", "Relationships"],
    ["support", "지원", "Support"], ["independence", "자율성", "Independence"],
  ];
  const EDUCATION_KO = {
    high_school: "고등학교 / High school", college: "전문대 / College", bachelor: "대학교 / Bachelor",
    master: "석사 / Master", doctorate: "박사 / Doctorate",
  };
  const GRADE_KO = { 1: "기능사 / Craftsman", 2: "산업기사 / Industrial engineer", 3: "기사 / Engineer", 4: "기능장 / Master" };
  const RESULT_SECTIONS = ["competency", "career-path", "labour-market", "package", "jobs", "courses", "certificates"];

  const state = {
    ref: null,
    names: {},
    apiKey: "",
    units: new Map(), // unit_id -> level (My data input)
    certs: new Set(), // certificate ids (My data input)
    last: null, // {identity, occupation, k} of the last submitted report
    labour: null, // last labour-market answer, redrawn on resize
    gap: null,
    runs: 0, // submitted reports (#report's data-run)
  };

  // ------------------------------------------------------------------ DOM helpers
  const $ = (sel, root = document) => root.querySelector(sel);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined) continue;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) if (c) node.append(c);
    return node;
  }

  const bi = (ko, en) => [ko, " ", el("span", { class: "en", lang: "en" }, "/ " + en)];
  const fmt = (x, digits = 0) =>
    x === null || x === undefined ? "—" : Number(x).toLocaleString("ko-KR", { maximumFractionDigits: digits });
  const pct = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)}%`);
  const name = (kind, id) => {
    const n = state.names[kind] && state.names[kind].get(Number(id));
    return n === undefined ? `#${id}` : n;
  };
  const eduName = (n) => EDUCATION_KO[n] || n;

  function options(select, items, { placeholder = null, group = false } = {}) {
    select.replaceChildren();
    if (placeholder) select.append(el("option", { value: placeholder[0] }, placeholder[1]));
    if (!group) {
      for (const it of items) select.append(el("option", { value: it.id }, it.name));
      return;
    }
    const groups = new Map();
    for (const it of items) {
      const g = it.group || "기타 / Other";
      if (!groups.has(g)) groups.set(g, el("optgroup", { label: g }));
      groups.get(g).append(el("option", { value: it.id }, it.name));
    }
    for (const og of groups.values()) select.append(og);
  }

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(status, message, field = null) {
      super(message);
      this.status = status;
      this.field = field;
    }
  }

  const AUTH_MESSAGE =
    "API 키가 없거나 올바르지 않습니다 (401). 위의 ‘API 키’ 칸에 입력하고 다시 보내세요. / " +
    "Missing or invalid API key (401): enter it in the ‘API key’ field above and submit again.";

  async function api(path, body) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (state.apiKey) headers["X-API-Key"] = state.apiKey;
    const url = new URL("../" + path, document.baseURI); // the API lives beside /ui/
    let resp;
    try {
      resp = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, "서비스에 연결할 수 없습니다 / Cannot reach the service");
    }
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (resp.status === 401) throw new ApiError(401, AUTH_MESSAGE);
    if (!resp.ok) {
      let msg = data && (data.error || data.detail || data.message);
      if (msg && typeof msg !== "string") msg = JSON.stringify(msg);
      throw new ApiError(resp.status, `${path}: ${msg || text.slice(0, 300) || resp.statusText} (HTTP ${resp.status})`);
    }
    return data;
  }

  // ------------------------------------------------------------------ reference data and the form
  async function loadReference() {
    const ref = await api("reference", {});
    state.ref = ref;
    for (const kind of ["occupations", "regions", "certificates", "units", "majors", "education_levels"]) {
      state.names[kind] = new Map((ref[kind] || []).map((x) => [Number(x.id), x.name]));
    }
    const occs = ref.occupations || [];
    const keep = $("#occupation").value;
    options($("#occupation"), occs, { group: true });
    if (keep) $("#occupation").value = keep;
    options($("#region"), ref.regions || []);
    options($("#lm-region"), ref.regions || [], { placeholder: ["", "전체 지역 / All regions"] });
    options($("#education"), (ref.education_levels || []).map((e) => ({ id: e.id, name: eduName(e.name) })));
    options($("#major"), ref.majors || [], { placeholder: ["-1", "없음 / None"] });
    options($("#last-occupation"), occs, { placeholder: ["-1", "없음 / None"], group: true });
    options($("#desired-1"), occs, { group: true });
    options($("#desired-2"), occs, { placeholder: ["", "선택 안 함 / None"], group: true });
    options($("#desired-3"), occs, { placeholder: ["", "선택 안 함 / None"], group: true });
    options($("#unit-pick"), ref.units || []);
    options($("#cert-pick"), ref.certificates || []);
    $("#as-of").textContent = ref.as_of ? `기준 시점 / as of ${ref.as_of}` : "";
  }

  function buildSliders(container, items, prefix, letters) {
    for (const [key, ko, en] of items) {
      const id = `${prefix}-${key}`;
      const input = el("input", { type: "range", id, name: id, min: 0, max: 100, step: 1, value: 50 });
      const out = el("output", { for: id, id: `${id}-out` }, "50");
      input.addEventListener("input", () => (out.textContent = input.value));
      container.append(el("div", { class: "slider" }, el("label", { for: id }, bi(letters ? `${ko} (${key})` : ko, en)), input, out));
    }
  }

  function renderChips(list, entries, onRemove) {
    list.replaceChildren();
    for (const [id, label] of entries) {
      const btn = el("button", { type: "button", "aria-label": `삭제 / Remove ${label}` }, "×");
      btn.addEventListener("click", () => onRemove(id));
      list.append(el("li", {}, el("span", {}, label), btn));
    }
  }

  function drawUnits() {
    renderChips($("#unit-list"), [...state.units].map(([u, lv]) => [u, `${name("units", u)} · Lv ${lv}`]), (u) => {
      state.units.delete(u);
      drawUnits();
      $("#unit-pick").focus();
    });
  }

  function drawCerts() {
    renderChips($("#cert-list"), [...state.certs].map((c) => [c, name("certificates", c)]), (c) => {
      state.certs.delete(c);
      drawCerts();
      $("#cert-pick").focus();
    });
  }

  function setMode() {
    const profile = $("#mode-profile").checked;
    const fs = $("#my-data");
    fs.hidden = !profile;
    fs.disabled = !profile;
    $("#seeker-id").disabled = profile;
    $("#seeker-id-field").hidden = profile;
  }

  function fieldError(sel, message) {
    return new ApiError(400, message, sel);
  }

  function intField(sel, lo, hi, label) {
    const raw = $(sel).value.trim();
    const v = Number(raw);
    if (raw === "" || !Number.isInteger(v) || v < lo || v > hi) {
      throw fieldError(sel, `${label}: ${lo}–${hi} 사이의 정수 / an integer from ${lo} to ${hi}`);
    }
    return v;
  }

  function readProfile() {
    const desired = [];
    for (const sel of ["#desired-1", "#desired-2", "#desired-3"]) {
      const v = $(sel).value;
      if (v !== "" && !desired.includes(Number(v))) desired.push(Number(v));
    }
    if (!desired.length) throw fieldError("#desired-1", "희망 직업을 고르세요 / Choose a desired occupation");
    const wage = Number($("#wage").value);
    if (!(wage >= 1 && wage <= 10000)) {
      throw fieldError("#wage", "희망 월급: 1–10000 (만원) / Wage: 1 to 10000 (10k KRW)");
    }
    const scores = (items, prefix) =>
      Object.fromEntries(items.map(([key]) => [key, Number($(`#${prefix}-${key}`).value)]));
    return {
      region_id: Number($("#region").value),
      education_level: Number($("#education").value),
      career_years: intField("#career-years", 0, 60, "경력 / Career years"),
      major_id: Number($("#major").value),
      last_occupation_id: Number($("#last-occupation").value),
      desired_occupation_ids: desired,
      reservation_wage: wage,
      riasec: scores(RIASEC, "riasec"),
      work_values: scores(WORK_VALUES, "wv"),
      competencies: [...state.units].map(([unit_id, level]) => ({ unit_id, level })),
      certificate_ids: [...state.certs],
    };
  }

  function readRequest() {
    const identity = $("#mode-profile").checked
      ? { profile: readProfile() }
      : { seeker_id: intField("#seeker-id", 0, Number.MAX_SAFE_INTEGER, "구직자 번호 / Seeker id") };
    if ($("#occupation").value === "") throw fieldError("#occupation", "목표 직업을 고르세요 / Choose a target occupation");
    return { identity, occupation: Number($("#occupation").value), k: intField("#k", 1, 100, "추천 개수 / Items") };
  }

  function showFormErrors(errors) {
    const box = $("#form-error");
    box.replaceChildren();
    const unique = [...new Set(errors.map((e) => e.message))];
    if (!unique.length) {
      box.hidden = true;
      return;
    }
    box.append(unique.length === 1 ? el("p", {}, unique[0]) : el("ul", {}, unique.map((m) => el("li", {}, m))));
    box.hidden = false;
  }

  // ------------------------------------------------------------------ sections
  async function runSection(id, fetcher, render) {
    const section = document.getElementById(id);
    const body = $(".body", section);
    section.dataset.state = "loading";
    section.setAttribute("aria-busy", "true");
    try {
      const data = await fetcher();
      body.replaceChildren();
      render(body, data);
      section.dataset.state = "ready";
      return data;
    } catch (e) {
      body.replaceChildren(el("p", { class: "error" }, e.message));
      section.dataset.state = "error";
      throw e;
    } finally {
      section.removeAttribute("aria-busy");
    }
  }

  function renderRecs(body, data) {
    if (!data.items.length) {
      body.append(el("p", { class: "empty" }, data.reason || "추천 결과가 없습니다 / Nothing to recommend"));
    } else {
      const ol = el("ol", { class: "rec-list" });
      for (const it of data.items) {
        const li = el(
          "li",
          { class: "rec-item", "data-id": it.id },
          el("div", { class: "rec-head" },
            el("span", { class: "rank", "aria-label": `순위 / rank ${it.rank}` }, String(it.rank)),
            el("h3", {}, it.title),
            el("span", { class: "score" }, `점수 / score ${fmt(it.score, 3)}`)),
        );
        if (it.reasons.length) {
          li.append(el("p", { class: "sub-h" }, bi("추천 이유", "Why")));
          li.append(el("ul", { class: "reasons" }, it.reasons.map((r) => el("li", {}, r))));
        }
        if (it.to_improve.length) {
          li.append(el("p", { class: "sub-h" }, bi("보완할 점", "To improve")));
          li.append(el("ul", { class: "improve" }, it.to_improve.map((r) => el("li", {}, r))));
        }
        ol.append(li);
      }
      body.append(ol);
    }
    const notes = [`모델 / model ${data.model_version || "—"} (${data.variant})`, `기준 / as of ${data.as_of}`];
    if (data.explored) notes.push("탐색 표본 / exploration slate");
    body.append(el("p", { class: "meta" }, notes.join(" · ")));
    if (data.degraded) body.append(el("p", { class: "warn" }, "일부 정보 없이 계산됨 / Computed without the online store"));
  }

  // a horizontal bar: held (dark) over required (light), levels 0-8
  function levelBars(held, required) {
    const w = 100;
    const x = (lv) => (w * Math.min(lv, 8)) / 8;
    const s = svg("svg", { class: "bar-svg", viewBox: `0 0 ${w} 14`, preserveAspectRatio: "none", "aria-hidden": "true" });
    s.append(svg("rect", { class: "bar-required", x: 0, y: 1, width: x(required), height: 12, rx: 1 }));
    if (held > 0) s.append(svg("rect", { class: "bar-held", x: 0, y: 4, width: x(held), height: 6, rx: 1 }));
    for (let lv = 1; lv < 8; lv++) s.append(svg("line", { class: "bar-grid", x1: x(lv), x2: x(lv), y1: 0, y2: 14 }));
    return s;
  }

  function renderGap(body, g) {
    state.gap = g;
    body.append(
      el("div", { class: "coverage" },
        el("p", {}, bi("목표 직업", "Occupation"), ": ", el("strong", {}, g.occupation)),
        el("p", {}, bi("충족도", "Coverage"), ": ", el("strong", { class: "coverage-value" }, pct(g.coverage))),
        el("p", {}, bi("부족한 능력단위", "Missing units"), ": ", el("strong", {}, String(g.missing.length)))),
      el("ul", { class: "legend", "aria-hidden": "true" },
        el("li", {}, svg("svg", { class: "swatch", viewBox: "0 0 10 10" }, svg("rect", { class: "bar-held", width: 10, height: 10 })), "보유 수준 / held level"),
        el("li", {}, svg("svg", { class: "swatch", viewBox: "0 0 10 10" }, svg("rect", { class: "bar-required", width: 10, height: 10 })), "요구 수준 / required level")),
    );
    if (!g.required.length) {
      body.append(el("p", { class: "empty" }, "요구 능력단위가 없습니다 / No required units"));
      return;
    }
    const missing = new Set(g.missing.map((u) => u.unit_id));
    const ul = el("ul", { class: "bars gap-chart", "aria-label": "능력단위별 보유/요구 수준 / held vs required level by unit" });
    for (const u of g.required) {
      const btn = el("button", { type: "button", class: "link", "data-unit": u.unit_id }, "경로 / Path");
      btn.addEventListener("click", () => loadCareerPath({ unit_id: u.unit_id }));
      ul.append(
        el("li", { class: `bar-row unit-bar${missing.has(u.unit_id) ? " unit-missing" : ""}`, "data-unit": u.unit_id },
          el("span", { class: "bar-label" }, u.name),
          levelBars(u.held_level, u.required_level),
          el("span", { class: "bar-val" }, `${u.held_level} / ${u.required_level} `, btn)),
      );
    }
    body.append(ul);
    const offers = [
      ["과정", "Courses that close the gap", g.courses],
      ["자격증", "Certificates that close the gap", g.certificates],
    ].filter(([, , xs]) => xs.length);
    for (const [ko, en, xs] of offers) {
      body.append(el("h4", {}, bi(`격차를 메우는 ${ko}`, en)));
      body.append(el("ul", { class: "offers" }, xs.slice(0, 5).map((o) =>
        el("li", {}, o.title, " — ", o.closes_units.map((u) => name("units", u)).join(", ")))));
    }
  }

  // ------------------------------------------------------------------ career path
  const GRADE_NAME = {
    craftsman: "기능사 / Craftsman", industrial_engineer: "산업기사 / Industrial engineer",
    engineer: "기사 / Engineer", master: "기능장 / Master",
  };
  const STATUS_NAME = {
    recruiting: "모집 중 / recruiting", upcoming: "모집 예정 / upcoming", running: "진행 중 / running", ended: "종료 / ended",
  };
  const total = (shown, all) => (all > shown ? ` (${shown}/${all})` : ` (${all})`);

  function pathList(key, ko, en, items, all, label) {
    return el("div", { class: "path-list", "data-list": key },
      el("h4", {}, bi(ko, en), total(items.length, all)),
      items.length ? el("ul", {}, items.map((x) => el("li", {}, label(x)))) : el("p", { class: "empty" }, "—"));
  }

  function elementLists(e) {
    return [
      pathList("knowledge", "지식", "Knowledge", e.knowledge, e.knowledge_total, (x) => x.name),
      pathList("skills", "기술", "Skills", e.skills, e.skills_total, (x) => x.name),
      pathList("tools", "장비·도구", "Tools", e.tools, e.tools_total, (x) => x.name),
    ];
  }

  function unitLists(p) {
    return [
      pathList("majors", "관련 전공", "Majors", p.majors, p.majors_total, (m) => m.name),
      pathList("certificates", "관련 자격증", "Certificates", p.certificates, p.certificates_total,
        (c) => `${c.name} · ${GRADE_NAME[c.grade] || c.grade} · Lv ${c.level}`),
      pathList("courses", "훈련과정", "Courses", p.courses, p.courses_total,
        (c) => `${c.title} · ${c.region} · ${STATUS_NAME[c.status] || c.status} · ${c.start_date}`),
      pathList("occupations", "필요로 하는 직업", "Occupations requiring it", p.occupations, p.occupations_total,
        (o) => `${o.title} · Lv ${o.level}`),
    ];
  }

  // the path as steps: study (major) -> certify -> train -> work (first of each list)
  function steps(p) {
    const first = [
      ["전공 / Major", p.majors[0] && p.majors[0].name],
      ["자격 / Certificate", p.certificates[0] && p.certificates[0].name],
      ["훈련 / Course", p.courses[0] && p.courses[0].title],
      ["직업 / Occupation", p.occupations[0] && p.occupations[0].title],
    ].filter(([, v]) => v);
    return el("ol", { class: "path-steps", "aria-label": "경로 / path" }, first.map(([k, v]) => el("li", {}, `${k}: ${v}`)));
  }

  function renderCareer(body, cp) {
    if (cp.unit) {
      const p = cp.unit;
      body.append(el("p", { class: "path-title" }, el("strong", {}, p.unit.name),
        ` · ${p.unit.code} · ${p.unit.group} · 모집 중 과정 / recruiting courses ${p.courses_recruiting}`));
      body.append(steps(p));
      body.append(el("div", { class: "path-grid unit-path" }, unitLists(p), elementLists(p.elements)));
    } else if (cp.occupation) {
      const o = cp.occupation;
      body.append(el("p", { class: "path-title" }, el("strong", {}, o.occupation.title), ` · ${o.occupation.code} · ${o.occupation.group}`));
      body.append(el("div", { class: "path-grid" }, elementLists(o.elements)));
      body.append(el("h3", {}, bi("필요 능력단위별 경로", "Path for each required unit"), total(o.units.length, o.units_total)));
      const ul = el("ul", { class: "path-units" });
      o.units.forEach((u, i) => {
        const d = el("details", { class: "path-unit", "data-unit": u.path.unit.unit_id },
          el("summary", {}, `${u.path.unit.name} · Lv ${u.level} · ${"★".repeat(u.importance)}`),
          steps(u.path), el("div", { class: "path-grid" }, unitLists(u.path)));
        if (i === 0) d.open = true;
        ul.append(el("li", {}, d));
      });
      body.append(ul);
    } else {
      body.append(el("p", { class: "empty" }, "경로 정보가 없습니다 / No career path information"));
    }
    for (const n of cp.notes || []) body.append(el("p", { class: "meta" }, n));
  }

  function loadCareerPath(query) {
    const section = document.getElementById("career-path");
    return runSection("career-path", () => api("career-path", query), renderCareer)
      .then(() => section.scrollIntoView({ block: "start" }))
      .catch((e) => showFormErrors([e]));
  }

  // ------------------------------------------------------------------ labour market
  const palette = (i, n) => `hsl(${Math.round((360 * i) / Math.max(n, 1))}, 65%, ${i % 2 ? 35 : 45}%)`;
  const cellText = (cell, minPeople) => (cell.suppressed ? `<${minPeople}` : fmt(cell.value));

  function lineChart({ caption, years, lines, width, cls, minPeople }) {
    const h = 220;
    const m = { l: 44, r: 22, t: 10, b: 26 }; // r: room for the last year's label, centred on its point
    const vals = lines.flatMap((l) => l.values.filter((v) => v !== null));
    const ymax = Math.max(1, ...vals);
    const step = niceStep(ymax);
    const top = Math.ceil(ymax / step) * step;
    const x = (i) => m.l + (years.length === 1 ? (width - m.l - m.r) / 2 : (i * (width - m.l - m.r)) / (years.length - 1));
    const y = (v) => h - m.b - ((h - m.t - m.b) * v) / top;
    const s = svg("svg", { class: `line-chart ${cls}`, viewBox: `0 0 ${width} ${h}`, role: "img", "aria-label": caption });
    const axis = svg("g", { class: "axis" });
    for (let v = 0; v <= top + 1e-9; v += step) {
      axis.append(svg("line", { class: "grid-line", x1: m.l, x2: width - m.r, y1: y(v), y2: y(v) }));
      axis.append(svg("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end", text: fmt(v) }));
    }
    years.forEach((yr, i) => axis.append(svg("text", { x: x(i), y: h - 8, "text-anchor": "middle", text: String(yr) })));
    s.append(axis);
    lines.forEach((line, li) => {
      const color = palette(li, lines.length);
      let d = "";
      let pen = false;
      line.values.forEach((v, i) => {
        if (v === null) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
        pen = true;
      });
      const g = svg("g", { class: "series", "data-region": line.key });
      g.append(svg("path", { class: "lm-line", d: d.trim() || `M${m.l},${y(0)}`, stroke: color },
        svg("title", { text: line.name })));
      line.values.forEach((v, i) => {
        if (v === null) return;
        g.append(svg("circle", { class: "lm-point", cx: x(i), cy: y(v), r: 3, fill: color },
          svg("title", { text: `${line.name} ${years[i]}: ${fmt(v)}` })));
      });
      s.append(g);
    });
    const legend = el("ul", { class: "legend" }, lines.map((l, li) =>
      el("li", {}, el("span", { class: "swatch", "data-color": palette(li, lines.length) }), l.name)));
    // swatch colours through CSSOM (allowed by the CSP, unlike style attributes)
    legend.querySelectorAll(".swatch").forEach((sw) => (sw.style.background = sw.dataset.color));
    const hidden = lines.reduce((n, l) => n + (l.hidden || 0), 0);
    const note = hidden
      ? el("p", { class: "meta suppressed-note" }, `비공개 ${hidden}칸 (<${minPeople}명): 선에서 빠짐 / ${hidden} suppressed points (<${minPeople}) left out of the lines`)
      : null;
    return el("figure", {}, el("figcaption", {}, caption), s, legend, note);
  }

  function niceStep(max) {
    const raw = max / 4;
    const p = 10 ** Math.floor(Math.log10(raw));
    return Math.max(1, [1, 2, 5, 10].map((f) => f * p).find((s) => s >= raw) || raw); // counts: whole steps
  }

  function seriesTable(lm, rows) {
    const table = el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "지역 / Region"), el("th", { scope: "col" }, "연도 / Year"),
        el("th", { scope: "col" }, "공고 / Postings"), el("th", { scope: "col" }, "모집인원 / Headcount"),
        el("th", { scope: "col" }, "지원자 / Applicants"), el("th", { scope: "col" }, "취업자 / Hires"),
        el("th", { scope: "col" }, "신규 구직자 / New seekers"))),
      el("tbody", {}, rows.map((r) => el("tr", {}, el("th", { scope: "row" }, r.region), el("td", {}, String(r.year)),
        el("td", {}, fmt(r.postings)), el("td", {}, fmt(r.headcount)), el("td", {}, cellText(r.applicants, lm.min_people)),
        el("td", {}, cellText(r.hires, lm.min_people)), el("td", {}, cellText(r.new_seekers, lm.min_people))))));
    return el("details", { class: "table" }, el("summary", {}, "표로 보기 / Show as a table"), el("div", { class: "table-wrap" }, table));
  }

  function distribution(title, dist, minPeople, labelOf) {
    const wrap = el("div", { class: "dist" }, el("h3", {}, title));
    if (!dist) return wrap.append(el("p", { class: "empty" }, "—")), wrap;
    wrap.append(el("p", { class: "meta" }, `${dist.year} · 총 / total ${cellText(dist.total, minPeople)}`));
    const max = Math.max(1, ...dist.items.map((c) => c.count.value || 0));
    const ul = el("ul", { class: "bars" });
    for (const c of dist.items) {
      const s = svg("svg", { class: "bar-svg", viewBox: "0 0 100 14", preserveAspectRatio: "none", "aria-hidden": "true" });
      if (c.count.suppressed) s.append(svg("rect", { class: "bar-suppressed", x: 0.5, y: 2, width: 99, height: 10 }));
      else s.append(svg("rect", { class: "bar-count", x: 0, y: 2, width: (100 * c.count.value) / max, height: 10 }));
      const val = c.count.suppressed ? `<${minPeople} (비공개 / suppressed)` : `${fmt(c.count.value)}${c.share !== null ? ` · ${pct(c.share)}` : ""}`;
      ul.append(el("li", { class: `bar-row dist-bar${c.count.suppressed ? " suppressed" : ""}` },
        el("span", { class: "bar-label" }, labelOf(c)), s, el("span", { class: "bar-val" }, val)));
    }
    wrap.append(ul);
    return wrap;
  }

  function topCertificates(tc) {
    const wrap = el("div", { class: "top-certs-wrap" },
      el("h3", {}, bi("요구 자격증 상위 5", "Top 5 certificates in postings")),
      el("p", { class: "meta" }, `${tc.year} (${fmt(tc.postings)} 공고 / postings) vs ${tc.previous_year}`));
    if (!tc.items.length) return wrap.append(el("p", { class: "empty" }, "—")), wrap;
    const max = Math.max(1, ...tc.items.map((c) => c.postings));
    const ol = el("ol", { class: "bars top-certs" });
    for (const c of tc.items) {
      const dir = c.change > 0 ? "up" : c.change < 0 ? "down" : "flat";
      const arrow = { up: "▲", down: "▼", flat: "＝" }[dir];
      const s = svg("svg", { class: "bar-svg", viewBox: "0 0 100 14", preserveAspectRatio: "none", "aria-hidden": "true" },
        svg("rect", { class: "bar-count", x: 0, y: 2, width: (100 * c.postings) / max, height: 10 }));
      ol.append(el("li", { class: "bar-row cert-bar" },
        el("span", { class: "bar-label" }, c.name), s,
        el("span", { class: "bar-val" }, `${fmt(c.postings)} (${pct(c.share)}) `,
          el("span", { class: `change change-${dir}`, "aria-label": `전년 대비 / vs previous year ${c.change > 0 ? "+" : ""}${c.change}` },
            `${arrow}${c.change > 0 ? "+" : ""}${c.change}`))));
    }
    wrap.append(ol);
    return wrap;
  }

  function training(t, minPeople) {
    const rate = (r) => (r.suppressed ? "비공개 / suppressed" : pct(r.value));
    const rows = [
      ["훈련 분야 / Field", t.field],
      ["종료 과정 / Ended courses", fmt(t.n_courses)],
      ["수강 / Enrolled", cellText(t.enrolled, minPeople)],
      ["수료 / Completed", cellText(t.completed, minPeople)],
      ["수료율 / Completion rate", rate(t.completion_rate)],
      [`취업률 (${t.employment_window_days}일) / Employment rate`, rate(t.employment_rate)],
      ["과정 안내 수료율 / Stated completion", t.catalogue_completion_rate === null ? "—" : pct(t.catalogue_completion_rate)],
      ["과정 안내 취업률 / Stated employment", t.catalogue_employment_rate === null ? "—" : pct(t.catalogue_employment_rate)],
    ];
    return el("div", { class: "training" }, el("h3", {}, bi("훈련 성과", "Training outcomes")),
      el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
  }

  function renderLabour(body, answer) {
    const lm = answer.occupation || answer; // LabourMarketResponse: {occupation, certificates}
    state.labour = answer;
    const width = Math.max(300, Math.min(640, body.clientWidth || 600));
    const regions = [];
    const byRegion = new Map();
    for (const r of lm.series) {
      const key = r.region_id === null ? "nation" : String(r.region_id);
      if (!byRegion.has(key)) {
        byRegion.set(key, new Map());
        regions.push({ key, name: r.region });
      }
      byRegion.get(key).set(r.year, r);
    }
    const regional = regions.filter((r) => r.key !== "nation"); // the nation is their sum: in the table
    const lines = (pick) => regional.map((r) => {
      const rows = lm.years.map((y) => byRegion.get(r.key).get(y));
      const values = rows.map((row) => (row ? pick(row) : null));
      return { key: r.key, name: r.name, values, hidden: rows.filter((row, i) => row && values[i] === null).length };
    });
    body.append(el("p", { class: "meta" }, `${lm.occupation} · ${lm.region} · ${lm.years.join(", ")} · 기준 / as of ${lm.as_of}`));
    body.append(el("div", { class: "charts" },
      lineChart({ caption: "연도별 채용공고 수 / Postings per year", years: lm.years, lines: lines((r) => r.postings), width, cls: "postings-chart", minPeople: lm.min_people }),
      lineChart({ caption: "연도별 신규 구직자 수 / New seekers per year", years: lm.years,
        lines: lines((r) => (r.new_seekers.suppressed ? null : r.new_seekers.value)), width, cls: "seekers-chart",
        minPeople: lm.min_people })));
    body.append(el("p", { class: "meta" }, `비공개: ${lm.min_people}명 미만 셀은 표시하지 않습니다 / cells of fewer than ${lm.min_people} people are suppressed (shown as <${lm.min_people}, never 0)`));
    body.append(seriesTable(lm, lm.series));
    const latest = (xs) => (xs && xs.length ? xs[xs.length - 1] : null);
    body.append(el("div", { class: "subgrid" },
      topCertificates(lm.top_certificates),
      distribution("연령별 취업자 / Hires by age", latest(lm.hires_by_age), lm.min_people, (c) => c.label),
      distribution("학력별 취업자 / Hires by education", latest(lm.hires_by_education), lm.min_people, (c) => eduName(c.label)),
      training(lm.training, lm.min_people)));
  }

  function labourQuery() {
    const body = { occupation_id: state.last.occupation };
    if ($("#lm-region").value !== "") body.region_id = Number($("#lm-region").value);
    return body;
  }

  // ------------------------------------------------------------------ package
  function renderPackage(body, p) {
    body.append(el("div", { class: "coverage" },
      el("p", {}, bi("현재 충족도", "Coverage now"), ": ", el("strong", {}, pct(p.coverage))),
      el("p", {}, bi("부족한 능력단위", "Missing units"), ": ", el("strong", {}, String(p.missing_units))),
      el("p", {}, bi("지역 수요 가중치", "Regional demand weight"), ": ", el("strong", {}, fmt(p.demand_weight, 2)))));
    body.append(el("p", { class: "meta" }, p.objective));
    if (!p.bundles.length) body.append(el("p", { class: "empty" }, p.reason || "추천 패키지가 없습니다 / No package"));
    const ol = el("ol", { class: "bundles" });
    for (const b of p.bundles) {
      const li = el("li", { class: "bundle", "data-rank": b.rank },
        el("h3", {}, `묶음 ${b.rank} / Bundle ${b.rank}`),
        el("dl", { class: "facts" },
          el("dt", {}, "충족도 / Coverage"), el("dd", {}, `${pct(p.coverage)} → ${pct(b.coverage)} (기대 / expected ${pct(b.expected_coverage)})`),
          el("dt", {}, "예상 기간 / Expected days"), el("dd", {}, `${fmt(b.duration_days)}일 / days`),
          el("dt", {}, "노력 / Effort"), el("dd", {}, `${fmt(b.cost_days)}일 / days`)));
      if (b.courses.length) {
        li.append(el("h4", {}, bi("훈련과정", "Courses")));
        li.append(el("ul", { class: "bundle-courses" }, b.courses.map((c) => el("li", {}, c.title,
          el("span", { class: "meta" }, ` · ${fmt(c.start_in_days)}일 후 시작 / starts in ${fmt(c.start_in_days)} d · ${fmt(c.duration_days)} d · 수료 / completion ${pct(c.completion_rate)}`)))));
      }
      if (b.certificates.length) {
        li.append(el("h4", {}, bi("자격증", "Certificates")));
        li.append(el("ul", { class: "bundle-certs" }, b.certificates.map((c) => el("li", {}, c.title,
          el("span", { class: "meta" }, ` · ${GRADE_KO[Math.round(c.grade_level)] || c.grade_level} · 합격률 / pass ${pct(c.pass_rate)} · ${fmt(c.expected_days)} d`)))));
      }
      li.append(el("h4", {}, bi("채워지는 능력단위", "Units it closes")));
      li.append(el("ul", { class: "bundle-units" }, b.closes_units.map((u) => el("li", {}, u.name))));
      ol.append(li);
    }
    if (p.bundles.length) body.append(ol);
    if (p.postings.length) {
      body.append(el("h4", {}, bi(`${p.occupation} 채용공고`, "Open postings")));
      body.append(el("ul", { class: "postings" }, p.postings.slice(0, 10).map((x) => el("li", {}, `${x.title} — ${x.region}`))));
    }
    if (p.degraded) body.append(el("p", { class: "warn" }, "일부 정보 없이 계산됨 / Computed without the online store"));
  }

  // ------------------------------------------------------------------ submit
  async function onSubmit(ev) {
    ev.preventDefault();
    state.apiKey = $("#api-key").value.trim();
    document.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
    showFormErrors([]);
    const button = $("#submit");
    const status = $("#form-status");
    try {
      if (!state.ref) await loadReference();
      state.last = readRequest();
    } catch (e) {
      showFormErrors([e]);
      if (e.field) {
        $(e.field).setAttribute("aria-invalid", "true");
        $(e.field).focus();
      }
      return;
    }
    const { identity, occupation, k } = state.last;
    button.disabled = true;
    status.textContent = "불러오는 중… / Loading…";
    const report = document.getElementById("report");
    report.dataset.run = String(++state.runs);
    report.dataset.state = "loading";
    const jobs = [
      runSection("competency", () => api("competency-gap", { ...identity, occupation_id: occupation }), renderGap),
      runSection("career-path", () => api("career-path", { occupation_id: occupation }), renderCareer),
      runSection("labour-market", () => api("labour-market", labourQuery()), renderLabour),
      runSection("package", () => api("package", { ...identity, occupation_id: occupation, k: 3 }), renderPackage),
      runSection("jobs", () => api("recommend/jobs", { ...identity, k }), renderRecs),
      runSection("courses", () => api("recommend/courses", { ...identity, k }), renderRecs),
      runSection("certificates", () => api("recommend/certificates", { ...identity, k }), renderRecs),
    ];
    const results = await Promise.allSettled(jobs);
    const errors = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    showFormErrors(errors);
    const ok = results.length - errors.length;
    status.textContent = `완료 ${ok}/${results.length} / Done ${ok} of ${results.length}`;
    report.dataset.state = errors.length ? "error" : "ready";
    button.disabled = false;
  }

  function onRegionChange() {
    if (!state.last) return;
    runSection("labour-market", () => api("labour-market", labourQuery()), renderLabour).catch((e) => showFormErrors([e]));
  }

  let resizeTimer = null;
  function onResize() {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      const section = document.getElementById("labour-market");
      if (!state.labour || section.dataset.state !== "ready") return;
      const body = $(".body", section);
      body.replaceChildren();
      renderLabour(body, state.labour);
    }, 250);
  }

  function init() {
    buildSliders($("#riasec"), RIASEC, "riasec", true);
    buildSliders($("#work-values"), WORK_VALUES, "wv", false);
    options($("#unit-level"), [1, 2, 3, 4, 5, 6, 7, 8].map((v) => ({ id: v, name: `Lv ${v}` })));
    $("#unit-level").value = "3";
    document.querySelectorAll('input[name="mode"]').forEach((r) => r.addEventListener("change", setMode));
    $("#unit-add").addEventListener("click", () => {
      if ($("#unit-pick").value === "") return;
      state.units.set(Number($("#unit-pick").value), Number($("#unit-level").value));
      drawUnits();
    });
    $("#cert-add").addEventListener("click", () => {
      if ($("#cert-pick").value === "") return;
      state.certs.add(Number($("#cert-pick").value));
      drawCerts();
    });
    $("#api-key").addEventListener("change", () => {
      state.apiKey = $("#api-key").value.trim();
      if (!state.ref) loadReference().then(() => showFormErrors([])).catch((e) => showFormErrors([e]));
    });
    $("#lm-region").addEventListener("change", onRegionChange);
    $("#seeker-form").addEventListener("submit", onSubmit);
    window.addEventListener("resize", onResize);
    for (const id of RESULT_SECTIONS) document.getElementById(id).dataset.state = "idle";
    setMode();
    loadReference()
      .then(() => (document.body.dataset.ready = "true"))
      .catch((e) => {
        showFormErrors([e]);
        document.body.dataset.ready = "error";
      });
  }

  init();
})();
