// The responder page: one alarm, one station, one tap per step.
// The link token arrives in the URL fragment (never sent to a server by the
// browser) and goes to firewatch in the X-Responder-Token header only.
'use strict';
(function () {
  const id = decodeURIComponent(location.pathname.split('/')[2] || '');
  const $ = (x) => document.getElementById(x);
  let token = '';
  const m = /(?:^#|&)t=([^&]+)/.exec(location.hash);
  if (m) {
    token = m[1];
    try { sessionStorage.setItem('fw.link.' + id, token); } catch (e) { /* private mode */ }
  } else {
    try { token = sessionStorage.getItem('fw.link.' + id) || ''; } catch (e) { /* private mode */ }
  }
  let view = null;
  let skew = 0; // server time minus phone time, ms
  let busy = false;

  const name = () => { try { return localStorage.getItem('fw.name') || ''; } catch (e) { return ''; } };

  function showError(msg) {
    const e = $('error');
    e.textContent = msg;
    e.hidden = !msg;
  }
  function toast(msg) {
    const t = $('toast');
    t.textContent = msg;
    t.hidden = !msg;
  }

  async function call(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ 'X-Responder-Token': token }, opts.headers || {});
    opts.credentials = 'omit';
    opts.cache = 'no-store';
    const r = await fetch('/r/' + encodeURIComponent(id) + path, opts);
    let body = {};
    try { body = await r.json(); } catch (e) { /* not JSON */ }
    return { status: r.status, body: body };
  }

  async function load() {
    const r = await call('/state');
    if (r.status !== 200) {
      showError(r.body.error || ('加载失败（' + r.status + '）'));
      $('state').textContent = '无法打开';
      return;
    }
    showError('');
    setView(r.body);
  }

  function setView(v) {
    view = v;
    skew = new Date(v.now).getTime() - Date.now();
    render();
  }

  const sevClass = { fire: 'sev-fire', alarm: 'sev-alarm', warning: 'sev-warning' };
  const step = { raised: 0, pushed: 0, received: 0, acknowledged: 1, dispatched: 2, arrived: 3 };
  const stateZH = { raised: '已报警', pushed: '已推送', received: '已接收', acknowledged: '已接警', dispatched: '已出动',
    arrived: '已到场', resolved: '已处置', false_alarm: '误报', test: '测试', auto_cleared: '已自动恢复' };

  function fmtNum(v, unit) {
    if (unit === 'MPa') return v.toFixed(3);
    return (Math.round(v * 10) / 10).toString();
  }
  function fmtTime(s) {
    const d = new Date(s);
    const p = (n) => String(n).padStart(2, '0');
    return p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }
  function fmtDur(sec) {
    sec = Math.max(0, Math.floor(sec));
    const mm = Math.floor(sec / 60), ss = sec % 60;
    return (mm > 0 ? mm + ' 分 ' : '') + ss + ' 秒';
  }

  function render() {
    const v = view, a = v.alarm;
    document.title = (a.severity_zh || '报警') + ' ' + a.id + ' · 处置';
    $('head').className = 'head ' + (sevClass[a.severity] || '');
    $('sev').textContent = '【' + a.severity_zh + '】' + a.id;
    $('state').textContent = stateZH[a.state] || a.state;
    $('state').dataset.state = a.state;
    $('what').textContent = (v.device.kind_zh || a.kind) + ' ' + a.device;
    let reading = v.metric_zh || a.metric;
    if (a.unit && a.unit !== 'event') {
      reading += ' ' + fmtNum(a.value, a.unit) + ' ' + a.unit + '（报警值 ' + a.threshold + ' ' + a.unit + '）';
    }
    if (a.channel > 0) reading += ' 第' + a.channel + '路';
    reading += ' · 报警时间 ' + fmtTime(a.raised_at);
    $('reading').textContent = reading;
    $('where').textContent = [v.device.place, v.device.address].filter(Boolean).join(' ');
    $('unit').textContent = [v.device.unit ? '责任单位：' + v.device.unit : '',
      v.device.contact ? '责任人：' + v.device.contact : ''].filter(Boolean).join('　');
    const ph = $('phone');
    if (v.device.phone) {
      ph.href = 'tel:' + v.device.phone.replace(/[^0-9+]/g, '');
      ph.textContent = '拨打责任人 ' + (v.device.contact ? v.device.contact + ' ' : '') + v.device.phone;
      ph.hidden = false;
    } else ph.hidden = true;
    if (v.nav) {
      $('amap').href = v.nav.amap; $('amap').hidden = false;
      $('baidu').href = v.nav.baidu; $('baidu').hidden = false;
    }
    $('you').textContent = v.you.name;
    $('who').textContent = name() || '未填写';
    $('expires').textContent = fmtTime(v.link_expires);

    const hy = $('hydrants');
    hy.replaceChildren();
    if (!v.hydrants.length) {
      const li = document.createElement('li'); li.className = 'muted'; li.textContent = '2 公里内无登记的消火栓'; hy.append(li);
    }
    for (const h of v.hydrants) {
      const li = document.createElement('li');
      li.dataset.id = h.id;
      const t = document.createElement('span');
      t.textContent = h.id + ' ' + (h.address || '') + ' · ' + h.distance_m + ' 米 ';
      const pr = document.createElement('span');
      pr.className = 'pressure muted';
      const n = document.createElement('a');
      n.href = h.nav.amap; n.target = '_blank'; n.rel = 'noopener noreferrer'; n.textContent = '导航';
      li.append(t, pr, document.createTextNode(' '), n);
      hy.append(li);
    }
    renderPressures();
    const hl = $('history');
    hl.replaceChildren();
    for (const h of (a.history || [])) {
      const li = document.createElement('li');
      let t = fmtTime(h.at) + ' ' + (h.from === h.to ? '记录' : (stateZH[h.to] || h.to)) + ' · ' + h.actor;
      if (h.note) t += ' · ' + h.note;
      li.textContent = t;
      hl.append(li);
    }
    const s = a.open ? step[a.state] : 9;
    const set = (b, enabled, done) => { const e = $(b); e.disabled = !enabled || busy; e.classList.toggle('done', !!done); };
    set('btn-ack', a.open && s < 1, s >= 1);
    set('btn-dispatch', a.open && s === 1, s >= 2);
    set('btn-arrive', a.open && s === 2, s >= 3);
    set('btn-close', a.open, !a.open);
    if (!a.open) $('closeform').hidden = true;
    tick();
  }

  // Readings: the device's last hour and the hydrants' pressure, read from
  // InfluxDB in a request of their own, so that the alarm and the buttons
  // never wait for it; without them the page says so and works on.
  let readings = null;
  async function loadReadings() {
    try {
      const r = await call('/readings');
      readings = r.status === 200 ? r.body : { available: false, error: r.body.error || '实时数据暂不可用', hydrants: {} };
    } catch (e) {
      readings = { available: false, error: '实时数据暂不可用（网络错误）', hydrants: {} };
    }
    renderChart();
    renderPressures();
  }

  function renderPressures() {
    if (!readings) return;
    for (const li of $('hydrants').querySelectorAll('li[data-id]')) {
      const pr = li.querySelector('.pressure'), p = readings.hydrants[li.dataset.id];
      if (p) {
        pr.textContent = '水压 ' + p.mpa.toFixed(3) + ' MPa' + (p.old ? '（' + fmtTime(p.at) + '，数据较旧）' : '');
        pr.className = 'pressure ' + (p.old ? 'muted' : 'live');
        pr.dataset.mpa = String(p.mpa);
      } else {
        pr.textContent = readings.available ? '水压 无近期数据' : '水压 暂不可用';
        pr.className = 'pressure muted';
        delete pr.dataset.mpa;
      }
    }
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }

  // renderChart draws the last hour as an inline SVG: the peak of each
  // minute as a line with dots, the rule's level as a dashed red line.
  function renderChart() {
    const box = $('chart'), note = $('chart-note'), c = readings && readings.chart;
    box.replaceChildren();
    if (!readings) return;
    if (!c) {
      note.textContent = readings.error || '该报警没有可绘制的读数';
      return;
    }
    const unit = c.unit === 'event' ? '' : c.unit;
    $('chart-title').textContent = c.metric_zh + (c.channel ? ' 第' + c.channel + '路' : '') + (unit ? '（' + unit + '）' : '');
    if (!c.points.length) {
      note.textContent = readings.error || '近一小时没有读数';
      return;
    }
    const W = 340, H = 150, L = 44, R = 8, T = 10, B = 22;
    const t0 = new Date(c.from).getTime(), t1 = new Date(c.to).getTime();
    let lo = Infinity, hi = -Infinity;
    for (const p of c.points) { lo = Math.min(lo, p.v); hi = Math.max(hi, p.v); }
    if (c.threshold != null) { lo = Math.min(lo, c.threshold); hi = Math.max(hi, c.threshold); }
    if (c.event) { lo = 0; hi = 1; }
    if (lo > 0 && lo < hi * 0.5) lo = 0;
    if (hi === lo) { hi += 1; lo = Math.max(0, lo - 1); }
    const pad = (hi - lo) * 0.08; hi += pad; if (lo !== 0) lo -= pad;
    const x = (t) => L + (Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0) * (W - L - R);
    const y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
    const svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + H, width: '100%', role: 'img', id: 'chart-svg',
      'aria-label': '设备近一小时读数' });
    svg.dataset.points = String(c.points.length);
    svg.append(svgEl('rect', { x: L, y: T, width: W - L - R, height: H - T - B, fill: '#f7f8fa' }));
    const fmt = (v) => fmtNum(v, c.unit);
    for (const v of [lo, (lo + hi) / 2, hi]) {
      svg.append(svgEl('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#86909c' }, fmt(v)));
    }
    for (const [t, label] of [[t0, '60 分钟前'], [(t0 + t1) / 2, '30 分钟前'], [t1, '现在']]) {
      svg.append(svgEl('text', { x: x(t), y: H - 6, 'text-anchor': t === t0 ? 'start' : (t === t1 ? 'end' : 'middle'),
        'font-size': 10, fill: '#86909c' }, label));
    }
    if (c.threshold != null) {
      svg.append(svgEl('line', { x1: L, x2: W - R, y1: y(c.threshold), y2: y(c.threshold), stroke: '#d4380d',
        'stroke-dasharray': '4 3', 'stroke-width': 1, class: 'threshold' }));
      svg.append(svgEl('text', { x: W - R - 2, y: y(c.threshold) - 3, 'text-anchor': 'end', 'font-size': 10, fill: '#d4380d' },
        '报警值 ' + fmt(c.threshold)));
    }
    const pts = c.points.map((p) => [x(new Date(p.t).getTime()), y(p.v)]);
    svg.append(svgEl('polyline', { points: pts.map((p) => p[0].toFixed(1) + ',' + p[1].toFixed(1)).join(' '),
      fill: 'none', stroke: '#165dff', 'stroke-width': 2, 'stroke-linejoin': 'round' }));
    c.points.forEach((p, i) => {
      const over = c.threshold != null && p.v >= c.threshold;
      const dot = svgEl('circle', { cx: pts[i][0], cy: pts[i][1], r: 2.5, fill: over ? '#d4380d' : '#165dff', class: 'pt' });
      dot.dataset.v = String(p.v);
      dot.append(svgEl('title', {}, fmtTime(p.t) + ' ' + fmt(p.v) + (unit ? ' ' + unit : '')));
      svg.append(dot);
    });
    box.append(svg);
    const last = c.points[c.points.length - 1];
    note.replaceChildren('最新 ', Object.assign(document.createElement('b'), { id: 'chart-last', textContent: fmt(last.v) + (unit ? ' ' + unit : '') }),
      '（' + fmtTime(last.t) + '），每分钟取最大值' + (readings.error ? ' · ' + readings.error : ''));
  }

  function tick() {
    if (!view) return;
    const a = view.alarm, r = a.response || {};
    const now = (a.closed_at ? new Date(a.closed_at).getTime() : Date.now() + skew);
    const since = (now - new Date(a.raised_at).getTime()) / 1000;
    const clock = (elID, done, target, open) => {
      const el = $(elID), val = el.querySelector('.value');
      if (done != null) {
        val.textContent = fmtDur(done) + (done <= target ? ' ✓ 达标' : ' ✗ 超时');
        el.className = 'clock ' + (done <= target ? 'ok' : 'late');
      } else if (open) {
        val.textContent = '已过 ' + fmtDur(since);
        el.className = 'clock running ' + (since > target ? 'late' : '');
      } else {
        val.textContent = '—'; el.className = 'clock';
      }
    };
    clock('clock-respond', r.acknowledged_s, view.respond_target_s, a.open);
    clock('clock-arrive', r.arrived_s, view.arrive_target_s, a.open);
  }

  function position() {
    return new Promise((resolve) => {
      if (!navigator.geolocation) return resolve(null);
      navigator.geolocation.getCurrentPosition(
        (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude, accuracy: p.coords.accuracy }),
        () => resolve(null), { enableHighAccuracy: true, timeout: 8000, maximumAge: 60000 });
    });
  }

  async function tap(action, extra) {
    if (!name()) { askName(); return; }
    busy = true; render(); toast('提交中…');
    const body = Object.assign({ action: action, name: name() }, extra || {});
    if (action === 'arrive') {
      const p = await position();
      if (p) Object.assign(body, p);
    }
    try {
      const r = await call('/tap', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      busy = false;
      if (r.body.view) setView(r.body.view);
      if (r.status === 200) toast(r.body.noop ? '已记录过，无需重复操作' : '已记录');
      else toast(r.body.error || ('提交失败（' + r.status + '）'));
    } catch (e) {
      busy = false; render(); toast('网络错误，请重试');
    }
  }

  function askName() {
    $('whoform').hidden = false;
    $('name').value = name();
    $('name').focus();
  }
  $('name-save').addEventListener('click', () => {
    const n = $('name').value.trim();
    if (!n) return;
    try { localStorage.setItem('fw.name', n); } catch (e) { /* private mode */ }
    $('whoform').hidden = true;
    if (view) render();
  });
  $('who-change').addEventListener('click', (e) => { e.preventDefault(); askName(); });
  $('btn-ack').addEventListener('click', () => tap('ack'));
  $('btn-dispatch').addEventListener('click', () => tap('dispatch'));
  $('btn-arrive').addEventListener('click', () => tap('arrive'));
  $('btn-close').addEventListener('click', () => { $('closeform').hidden = false; });
  $('closeform').addEventListener('submit', (e) => {
    e.preventDefault();
    const c = document.querySelector('input[name=cause]:checked');
    if (!c) { toast('请选择处置结果'); return; }
    tap('close', { cause: c.value, note: $('note').value });
  });

  // Live updates: Server-Sent Events read with fetch, since an
  // EventSource cannot carry the token header.
  async function live() {
    for (;;) {
      try {
        const r = await fetch('/r/' + encodeURIComponent(id) + '/events', { headers: { 'X-Responder-Token': token }, cache: 'no-store' });
        if (r.status === 403 || r.status === 404) { $('live').textContent = '实时更新不可用'; return; }
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
              if (/^event: (alarm|reload)/m.test(ev)) load();
            }
          }
        }
      } catch (e) { /* reconnect below */ }
      $('live').textContent = '实时更新重连中';
      await new Promise((res) => setTimeout(res, 3000));
    }
  }

  if (!token) {
    showError('链接缺少授权信息，请从推送消息中重新打开');
    $('state').textContent = '无法打开';
    return;
  }
  if (!name()) askName();
  load().then(() => { loadReadings(); live(); });
  setInterval(tick, 1000);
  setInterval(load, 30000); // a safety net under the live stream
  setInterval(loadReadings, 60000);
})();
