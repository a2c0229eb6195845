// The 可视化运管 console: live board, offline map, stations, timeline, 考核.
// It signs in with an API token kept in sessionStorage and sent in the
// Authorization header (never a cookie, so writes are CSRF-safe).
'use strict';
(function () {
  const $ = (x) => document.getElementById(x);
  let token = '';
  try { token = sessionStorage.getItem('fw.token') || ''; } catch (e) { /* private mode */ }
  const alarms = new Map(); // id → alarm
  let ledger = { devices: [], stations: [], places: {} };
  const stationName = {};
  const deviceByID = {};
  const stateZH = { raised: '已报警', pushed: '已推送', received: '已接收', acknowledged: '已接警', dispatched: '已出动',
    arrived: '已到场', resolved: '已处置', false_alarm: '误报', test: '测试', auto_cleared: '已自动恢复' };
  const dutyZH = { on_duty: '在岗', busy: '出动中', off_duty: '离线', '': '未上报' };
  let skew = 0;

  function showError(msg) { $('error').textContent = msg; $('error').hidden = !msg; }

  async function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({}, opts.headers || {});
    if (token) opts.headers.Authorization = 'Bearer ' + token;
    opts.cache = 'no-store';
    opts.credentials = 'omit';
    const r = await fetch(path, opts);
    if (r.status === 401) { logout('令牌无效或已失效，请重新登录'); throw new Error('401'); }
    return r;
  }
  async function json(path, opts) {
    const r = await api(path, opts);
    const b = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(b.error || ('HTTP ' + r.status));
    const d = r.headers.get('Date');
    if (d) skew = new Date(d).getTime() - Date.now();
    return b;
  }

  function logout(msg) {
    try { sessionStorage.removeItem('fw.token'); } catch (e) { /* private mode */ }
    token = '';
    $('app').hidden = true; $('login').hidden = false; $('logout').hidden = true;
    showError(msg || '');
  }

  $('login-go').addEventListener('click', async () => {
    token = $('token').value.trim();
    try {
      await json('/api/v1/alarms?state=open&limit=1');
      try { sessionStorage.setItem('fw.token', token); } catch (e) { /* private mode */ }
      start();
    } catch (e) { if (e.message !== '401') showError('登录失败：' + e.message); }
  });
  $('token').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('login-go').click(); });
  $('logout').addEventListener('click', (e) => { e.preventDefault(); logout(); });

  const fmtTime = (s) => { const d = new Date(s); const p = (n) => String(n).padStart(2, '0');
    return p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()); };
  const fmtDur = (sec) => { sec = Math.max(0, Math.floor(sec)); const m = Math.floor(sec / 60); return (m ? m + '分' : '') + (sec % 60) + '秒'; };
  const step = { raised: 0, pushed: 0, received: 0, acknowledged: 1, dispatched: 2, arrived: 3 };
  function td(text, cls) { const e = document.createElement('td'); e.textContent = text; if (cls) e.className = cls; return e; }

  // acked / arrived times are not in a list entry: a state at or past the
  // step means it happened; the clock then shows 达成 without the time.
  function clockCell(a, stepN, target) {
    const since = (Date.now() + skew - new Date(a.raised_at).getTime()) / 1000;
    if (step[a.state] >= stepN) return td('已完成', 'ok');
    return td(fmtDur(since), since > target ? 'late' : '');
  }

  function boardRow(a) {
    const tr = document.createElement('tr');
    tr.dataset.id = a.id; tr.dataset.state = a.state; tr.dataset.station = a.station;
    tr.className = 'sev-' + a.severity;
    tr.append(td(a.id + (a.incident ? ' · ' + a.incident : '')), td(a.severity_zh),
      td(a.device + ' ' + (ledger.places[a.grid] || a.grid)), td(stationName[a.station] || a.station || '未指定', 'station'),
      td(stateZH[a.state] || a.state, 'state'), clockCell(a, 1, 60), clockCell(a, 3, 180));
    tr.addEventListener('click', () => timeline(a.id));
    return tr;
  }

  // renderBoard draws every open alarm; update (a live event) redraws one
  // row only, so that a board of hundreds of alarms stays quick.
  function renderBoard() {
    const t0 = performance.now();
    const open = [...alarms.values()].filter((a) => a.open).sort((x, y) => (x.raised_at < y.raised_at ? 1 : -1));
    $('board').querySelector('tbody').replaceChildren(...open.map(boardRow));
    $('count').textContent = open.length + ' 起';
    $('board').dataset.loaded = '1';
    renderStations();
    drawMap();
    window.fwRenderMs = performance.now() - t0; // read by the browser test
  }
  function update(a) {
    const t0 = performance.now();
    alarms.set(a.id, a);
    const tb = $('board').querySelector('tbody');
    const old = tb.querySelector('tr[data-id="' + CSS.escape(a.id) + '"]');
    if (!a.open) { if (old) old.remove(); } else if (old) old.replaceWith(boardRow(a)); else tb.prepend(boardRow(a));
    $('count').textContent = tb.children.length + ' 起';
    renderStations();
    drawMap();
    if ($('tl-id').dataset.id === a.id) timeline(a.id);
    loadMembers();
    window.fwRenderMs = performance.now() - t0;
  }

  async function redispatch(id, station) {
    if (!station) return;
    try {
      const a = await json('/console/api/alarms/' + encodeURIComponent(id) + '/redispatch', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ station: station }) });
      update(a); timeline(a.id);
    } catch (e) { if (e.message !== '401') showError('改派失败：' + e.message); }
  }

  async function timeline(id) {
    try {
      const a = await json('/api/v1/alarms/' + encodeURIComponent(id));
      $('tl-id').textContent = a.id + ' ' + a.message;
      $('tl-id').dataset.id = a.id;
      const sel = $('redispatch-station'); sel.replaceChildren();
      for (const s of ledger.stations) {
        if (s.id === a.station) continue;
        const o = document.createElement('option'); o.value = s.id; o.textContent = s.name; sel.append(o);
      }
      $('redispatch').hidden = !a.open;
      const ol = $('timeline'); ol.replaceChildren();
      for (const h of a.history || []) {
        const li = document.createElement('li');
        li.textContent = fmtTime(h.at) + ' ' + (h.from === h.to ? '记录' : (stateZH[h.to] || h.to)) + ' · ' + h.actor + (h.note ? ' · ' + h.note : '');
        ol.append(li);
      }
    } catch (e) { /* shown by api */ }
  }

  let stationStatus = [];
  let members = [];
  let membersTimer = null;
  // loadMembers reads who acted through responder links, at most every 2 s.
  function loadMembers() {
    if (membersTimer) return;
    membersTimer = setTimeout(async () => {
      membersTimer = null;
      try { members = (await json('/console/api/members')).members; renderStations(); } catch (e) { /* next time */ }
    }, 300);
  }
  function renderStations() {
    const tb = $('stations').querySelector('tbody'); const rows = [];
    const active = {};
    for (const a of alarms.values()) {
      if (!a.open) continue;
      active[a.station] = (active[a.station] || 0) + 1;
    }
    for (const s of stationStatus) {
      const tr = document.createElement('tr'); tr.dataset.station = s.station;
      let duty = dutyZH[s.duty || ''];
      const busy = [...alarms.values()].some((a) => a.open && a.station === s.station && step[a.state] >= 2);
      if (busy) duty = '出动中';
      tr.append(td(s.name || s.station), td(duty, busy ? 'late' : (s.ready ? 'ok' : '')), td(String(s.people || 0)),
        td(String(active[s.station] || 0)), td(members.filter((m) => m.station === s.station).map((m) => m.name).join('、'), 'members'));
      rows.push(tr);
    }
    tb.replaceChildren(...rows);
  }

  // The offline map: an equirectangular projection of the ledger's
  // coordinates, scaled by cos(latitude), fitted to the canvas.
  function drawMap() {
    const cv = $('map'); const ctx = cv.getContext('2d');
    const w = cv.clientWidth || 640, h = cv.clientHeight || 360, dpr = window.devicePixelRatio || 1;
    if (cv.width !== Math.round(w * dpr)) { cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr); }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pts = ledger.devices.concat(ledger.stations.filter((s) => s.lat || s.lon));
    if (!pts.length) return;
    let minLat = Infinity, maxLat = -Infinity, minLon = Infinity, maxLon = -Infinity;
    for (const p of pts) { minLat = Math.min(minLat, p.lat); maxLat = Math.max(maxLat, p.lat); minLon = Math.min(minLon, p.lon); maxLon = Math.max(maxLon, p.lon); }
    let x, y;
    if (ledger.tiles) {
      // console.map_tiles: web mercator over XYZ tiles (tiles.js).
      const v = window.fwTiles.view(ledger.tiles, ledger.attribution || '', ctx, cv, w, h, minLat, maxLat, minLon, maxLon, drawMap);
      x = v.x; y = v.y;
    } else {
      const k = Math.cos((minLat + maxLat) / 2 * Math.PI / 180);
      const sx = (maxLon - minLon) * k || 1e-3, sy = (maxLat - minLat) || 1e-3;
      const sc = Math.min((w - 40) / sx, (h - 40) / sy);
      x = (lon) => 20 + (lon - minLon) * k * sc; y = (lat) => h - 20 - (lat - minLat) * sc;
    }
    ctx.fillStyle = '#a9aeb8';
    for (const d of ledger.devices) ctx.fillRect(x(d.lon) - 1, y(d.lat) - 1, 2, 2);
    ctx.fillStyle = '#165dff';
    for (const s of ledger.stations) if (s.lat || s.lon) ctx.fillRect(x(s.lon) - 5, y(s.lat) - 5, 10, 10);
    const byID = deviceByID;
    ctx.strokeStyle = '#d4380d'; ctx.lineWidth = 2;
    for (const a of alarms.values()) {
      const d = byID[a.device];
      if (!a.open || !d) continue;
      ctx.beginPath(); ctx.arc(x(d.lon), y(d.lat), a.severity === 'fire' ? 8 : 5, 0, 2 * Math.PI); ctx.stroke();
    }
    drawGrids(w, h, x, y);
  }

  // 三色预警 per grid (docs/grafana.md, the same rule as the Grafana
  // plugin's): red for an open fire or alarm, or 30 % of the devices
  // offline; yellow for an open warning or fault, or 10 % offline; green
  // otherwise. Offline devices are those with an open 离线 alarm.
  const riskZH = { red: '红', yellow: '黄', green: '绿' };
  const riskRank = { red: 0, yellow: 1, green: 2 };
  const riskColour = { red: '#f5222d', yellow: '#faad14', green: '#52c41a' };
  function gridRisks() {
    const by = {};
    for (const a of alarms.values()) {
      if (!a.open) continue;
      const r = by[a.grid] || (by[a.grid] = { open: {}, n: 0, off: new Set() });
      if (a.severity === 'offline') r.off.add(a.device);
      else { r.open[a.severity] = (r.open[a.severity] || 0) + 1; r.n++; }
    }
    return (ledger.grids || []).map((g) => {
      const r = by[g.grid] || { open: {}, n: 0, off: new Set() };
      const ratio = g.devices ? r.off.size / g.devices : 0;
      let risk = 'green';
      if (r.open.fire || r.open.alarm || ratio >= 0.3) risk = 'red';
      else if (r.open.warning || r.open.fault || ratio >= 0.1) risk = 'yellow';
      return { g: g, risk: risk, open: r.n, offline: r.off.size };
    });
  }

  // drawGrids outlines each grid (the convex hull of its devices, pushed
  // out a little so that the dots on its edge are inside; a ring where
  // there are fewer than three) in its colour, over the canvas.
  function drawGrids(w, h, x, y) {
    const svg = $('map-grids'), NS = 'http://www.w3.org/2000/svg';
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    const els = [], rows = [];
    const risks = gridRisks();
    for (const r of risks) {
      const pts = r.g.outline.map((p) => [x(p[1]), y(p[0])]);
      if (!pts.length) continue;
      const cx = pts.reduce((s, p) => s + p[0], 0) / pts.length, cy = pts.reduce((s, p) => s + p[1], 0) / pts.length;
      let e;
      if (pts.length >= 3) {
        e = document.createElementNS(NS, 'polygon');
        e.setAttribute('points', pts.map((p) => {
          const dx = p[0] - cx, dy = p[1] - cy, l = Math.hypot(dx, dy) || 1;
          return (p[0] + dx / l * 4).toFixed(1) + ',' + (p[1] + dy / l * 4).toFixed(1);
        }).join(' '));
      } else {
        e = document.createElementNS(NS, 'circle');
        e.setAttribute('cx', cx.toFixed(1)); e.setAttribute('cy', cy.toFixed(1));
        e.setAttribute('r', (Math.max(...pts.map((p) => Math.hypot(p[0] - cx, p[1] - cy))) + 10).toFixed(1));
      }
      e.setAttribute('class', 'grid');
      e.setAttribute('fill', riskColour[r.risk]); e.setAttribute('fill-opacity', r.risk === 'green' ? '0.08' : '0.2');
      e.setAttribute('stroke', riskColour[r.risk]); e.setAttribute('stroke-width', '1.5');
      e.dataset.grid = r.g.grid; e.dataset.risk = r.risk;
      const tt = document.createElementNS(NS, 'title'); tt.textContent = (r.g.name || r.g.grid) + ' · ' + riskZH[r.risk]; e.append(tt);
      els.push(e);
    }
    svg.replaceChildren(...els);
    risks.sort((a, b) => riskRank[a.risk] - riskRank[b.risk] || (a.g.name || a.g.grid).localeCompare(b.g.name || b.g.grid));
    for (const r of risks) {
      const tr = document.createElement('tr'); tr.dataset.grid = r.g.grid; tr.dataset.risk = r.risk;
      const badge = document.createElement('span'); badge.className = 'risk risk-' + r.risk; badge.textContent = riskZH[r.risk];
      const c = td(''); c.append(badge);
      tr.append(td(r.g.name || r.g.grid), c, td(String(r.open)), td(String(r.offline)), td(String(r.g.devices)));
      rows.push(tr);
    }
    $('grid-risk').querySelector('tbody').replaceChildren(...rows);
  }

  // The 考核 dates are days of China Standard Time (the query appends +08:00), whatever the browser's zone is:
  // a browser on UTC after 16:00 would otherwise ask "until yesterday" and miss today's alarms.
  function dayISO(d) { return new Date(d.getTime() + 8 * 3600000).toISOString().slice(0, 10); }
  function statsQuery() {
    const q = new URLSearchParams();
    if ($('since').value) q.set('since', $('since').value + 'T00:00:00+08:00');
    if ($('until').value) q.set('until', $('until').value + 'T23:59:59+08:00');
    if ($('grid').value.trim()) q.set('grid', $('grid').value.trim());
    return q.toString();
  }
  const secs = (q) => (q && q.median_s != null ? q.median_s.toFixed(1) + ' 秒' : '—');
  const pct = (f, n) => (n ? (f * 100).toFixed(0) + '%' : '—');
  async function loadStats() {
    try {
      const b = await json('/api/v1/stats/response?' + statsQuery());
      const tb = $('stats').querySelector('tbody'); const rows = [];
      for (const s of b.stations) {
        const tr = document.createElement('tr'); tr.dataset.station = s.station;
        tr.append(td(s.station ? (stationName[s.station] || s.station) : '合计'), td(String(s.alarms)), td(String(s.false_alarms)),
          td(secs(s.acknowledge)), td(pct(s.responded_in_time, s.acknowledge.n)), td(secs(s.arrive)), td(pct(s.arrived_in_time, s.arrive.n)));
        rows.push(tr);
      }
      tb.replaceChildren(...rows);
      $('stats').dataset.loaded = String(Date.now());
    } catch (e) { if (e.message !== '401') showError('统计失败：' + e.message); }
  }
  $('stats-load').addEventListener('click', loadStats);
  $('redispatch-go').addEventListener('click', () => redispatch($('tl-id').dataset.id, $('redispatch-station').value));
  $('csv').addEventListener('click', async () => {
    const r = await api('/console/api/stats.csv?' + statsQuery());
    if (!r.ok) { showError('导出失败'); return; }
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement('a'); a.href = url; a.download = 'kaohe-' + ($('since').value || 'all') + '.csv';
    document.body.append(a); a.click(); a.remove(); setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  async function loadAll() {
    const [list, st] = await Promise.all([json('/api/v1/alarms?state=open&limit=1000'), json('/api/v1/stations')]);
    alarms.clear();
    for (const a of list.alarms) alarms.set(a.id, a);
    stationStatus = st.stations;
    renderBoard();
    loadMembers();
  }

  async function live() {
    for (;;) {
      try {
        const r = await api('/console/events');
        if (r.ok && r.body) {
          $('live').textContent = '实时更新中';
          const rd = r.body.getReader(), dec = new TextDecoder();
          let buf = '';
          for (;;) {
            const { value, done } = await rd.read();
            if (done) break;
            buf += dec.decode(value, { stream: true });
            let i;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const ev = buf.slice(0, i); buf = buf.slice(i + 2);
              const m = /^event: (\w+)\ndata: (.*)$/m.exec(ev);
              if (!m) continue;
              if (m[1] === 'alarm') update(JSON.parse(m[2]));
              if (m[1] === 'reload') loadAll();
            }
          }
        }
      } catch (e) { if (e.message === '401') return; }
      $('live').textContent = '实时更新重连中';
      await new Promise((res) => setTimeout(res, 3000));
      loadAll().catch(() => {});
    }
  }

  async function start() {
    $('login').hidden = true; $('app').hidden = false; $('logout').hidden = false; showError('');
    const now = new Date();
    $('until').value = dayISO(now); $('since').value = dayISO(new Date(now.getTime() - 30 * 86400000));
    try {
      ledger = await json('/console/api/map');
      for (const s of ledger.stations) stationName[s.id] = s.name;
      for (const d of ledger.devices) deviceByID[d.id] = d;
      await loadAll();
      loadStats();
      live();
      performance.mark('fw-board-ready');
    } catch (e) { if (e.message !== '401') showError('加载失败：' + e.message); }
  }

  setInterval(() => { if (!$('app').hidden) renderClocks(); }, 1000);
  function renderClocks() {
    for (const tr of $('board').querySelectorAll('tbody tr')) {
      const a = alarms.get(tr.dataset.id); if (!a) continue;
      for (const [i, n, target] of [[5, 1, 60], [6, 3, 180]]) {
        const c = clockCell(a, n, target), old = tr.children[i];
        if (old.textContent !== c.textContent) old.textContent = c.textContent;
        if (old.className !== c.className) old.className = c.className;
      }
    }
  }
  window.addEventListener('resize', drawMap);
  if (token) start(); else { $('login').hidden = false; }
})();
