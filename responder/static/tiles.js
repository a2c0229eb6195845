// The console's map over XYZ tiles (console.map_tiles, issue 16): web
// mercator, 256-pixel tiles, the zoom chosen so that the ledger's extent
// fits the canvas; the wheel zooms, dragging pans, a double click goes
// back to the fitted view. Without a tile template the console keeps its
// plain projection (console.js) and never calls this.
'use strict';
window.fwTiles = (function () {
  const T = 256, MAXZ = 18;
  const cache = new Map(); // url → Image
  let dz = 0, px = 0, py = 0; // the user's zoom steps and pan (pixels)
  let redraw = null, pending = false, failed = 0, bound = false;

  // world is the web-mercator pixel of (lat, lon) at zoom z.
  function world(lat, lon, z) {
    const n = T * Math.pow(2, z);
    const s = Math.sin(Math.max(-85.05112878, Math.min(85.05112878, lat)) * Math.PI / 180);
    return [(lon + 180) / 360 * n, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * n];
  }

  function schedule() {
    if (pending || !redraw) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; redraw(); });
  }

  function bind(cv) {
    if (bound) return;
    bound = true;
    cv.addEventListener('wheel', (e) => {
      e.preventDefault();
      const step = e.deltaY < 0 ? 1 : -1;
      if (fitZ + dz + step < 0 || fitZ + dz + step > MAXZ) return;
      dz += step;
      px = step > 0 ? px * 2 : px / 2; py = step > 0 ? py * 2 : py / 2;
      schedule();
    }, { passive: false });
    let drag = null;
    cv.addEventListener('pointerdown', (e) => { drag = [e.clientX, e.clientY]; cv.setPointerCapture(e.pointerId); });
    cv.addEventListener('pointermove', (e) => {
      if (!drag) return;
      px -= e.clientX - drag[0]; py -= e.clientY - drag[1]; drag = [e.clientX, e.clientY];
      schedule();
    });
    cv.addEventListener('pointerup', () => { drag = null; });
    cv.addEventListener('dblclick', () => { dz = 0; px = 0; py = 0; schedule(); });
  }

  function caption(attribution) {
    const h = document.getElementById('map-title'), p = document.getElementById('map-proj'), a = document.getElementById('map-attr');
    if (h) h.textContent = '网格地图';
    if (p) p.textContent = '底图为配置的瓦片地图（Web 墨卡托，WGS-84）；滚轮缩放，拖动平移，双击复位。';
    if (a && attribution) { a.textContent = attribution; a.hidden = false; }
  }

  let fitZ = 0;
  // view draws the tiles of the view on ctx and returns the projection
  // of the points and outlines drawn over them.
  function view(tmpl, attribution, ctx, cv, w, h, minLat, maxLat, minLon, maxLon, again) {
    if (!redraw) caption(attribution);
    redraw = again;
    bind(cv);
    let z = MAXZ;
    for (; z > 0; z--) {
      const a = world(maxLat, minLon, z), b = world(minLat, maxLon, z);
      if (b[0] - a[0] <= w - 40 && b[1] - a[1] <= h - 40) break;
    }
    fitZ = z;
    z += dz;
    const a = world(maxLat, minLon, z), b = world(minLat, maxLon, z);
    const ox = Math.round((a[0] + b[0]) / 2 - w / 2 + px), oy = Math.round((a[1] + b[1]) / 2 - h / 2 + py);
    const n = Math.pow(2, z);
    let want = 0, drawn = 0;
    if (cache.size > 512) cache.clear();
    for (let ty = Math.floor(oy / T); ty * T < oy + h; ty++) {
      if (ty < 0 || ty >= n) continue;
      for (let tx = Math.floor(ox / T); tx * T < ox + w; tx++) {
        const url = tmpl.replace(/\{z\}/g, z).replace(/\{x\}/g, ((tx % n) + n) % n).replace(/\{y\}/g, ty);
        want++;
        let im = cache.get(url);
        if (!im) {
          im = new Image();
          im.onload = schedule;
          // A tile that failed is asked for again at a redraw 30 s on.
          im.onerror = () => { failed++; cv.dataset.tilesFailed = String(failed); setTimeout(() => cache.delete(url), 30000); };
          im.src = url;
          cache.set(url, im);
        }
        if (im.complete && im.naturalWidth) { ctx.drawImage(im, tx * T - ox, ty * T - oy, T, T); drawn++; }
      }
    }
    // For the tests and the curious: what this view shows.
    cv.dataset.tileZoom = String(z);
    cv.dataset.tileOrigin = ox + ',' + oy;
    cv.dataset.tilesWanted = String(want);
    cv.dataset.tilesDrawn = String(drawn);
    return {
      x: (lon) => world(0, lon, z)[0] - ox,
      y: (lat) => world(lat, 0, z)[1] - oy,
    };
  }
  return { view: view, world: world };
})();
