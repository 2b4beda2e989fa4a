// Drives the OHIF viewer's LDH review mode in headless Debian Chromium (SwiftShader WebGL with --disable-gpu).
// Env: LDH_URL (server root), LDH_KEY (reviewer key), LDH_STUDY, LDH_UNANALYSED (a study with no AI result), LDH_ARTIFACTS, LDH_CHROMIUM.
// Prints one JSON line with what it saw; test_viewer_browser.py checks it against the stored records.
import { chromium } from 'playwright-core';

const { LDH_URL, LDH_KEY, LDH_STUDY, LDH_UNANALYSED, LDH_ARTIFACTS, LDH_CHROMIUM } = process.env;
const out = { console: [] };
const browser = await chromium.launch({ executablePath: LDH_CHROMIUM || '/usr/bin/chromium', args: ['--disable-gpu', '--no-sandbox'] });
const shot = (page, name) => page.screenshot({ path: `${LDH_ARTIFACTS}/${name}` });

async function open(path, { key = LDH_KEY, route } = {}) {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  page.on('console', (m) => { if (m.type() === 'error') out.console.push(m.text().slice(0, 300)); });
  page.on('pageerror', (e) => out.console.push(`Uncaught ${e.message}`));
  if (route) await page.route(route.url, route.handler);
  if (key !== null) await page.addInitScript((k) => sessionStorage.setItem('ldh-assist-token', k), key);
  await page.goto(new URL(path, LDH_URL).href);
  return page;
}
const showsABox = () => {
  const r = window.ldhReview;
  const shown = r.viewport.getCurrentImageId();
  return r.rows().some((row) => row.annotation.metadata.referencedImageId === shown);
};
// the type of the next dialog the page opens, dismissed ('none: ...' if none comes)
const dismissNext = (page) => page.waitForEvent('dialog', { timeout: 10000 })
  .then(async (d) => { const t = d.type(); await d.dismiss(); return t; }, (e) => `none: ${e.message}`);
const panelState = (page) => page.evaluate(() => document.querySelector('[data-ldh=status]')?.dataset.state);

// Every RectangleROI as Cornerstone itself maps it to image pixels (an independent check of our mapping)
const drawnBoxes = (page) => page.evaluate(() => {
  const { series, viewport } = window.ldhReview;
  const toImage = window.cornerstone.utilities.worldToImageCoords;
  return window.cornerstoneTools.annotation.state.getAllAnnotations()
    .filter((a) => a.metadata.toolName === 'RectangleROI')
    .map((a) => {
      const slice = series.byImageId.get(a.metadata.referencedImageId);
      return {
        uid: a.annotationUID, level: window.ldhReview.meta.get(a.annotationUID)?.level, label: a.data.label, sop: slice.sop, slice_index: slice.index,
        image_points: a.data.handles.points.map((p) => toImage(a.metadata.referencedImageId, p)),
        canvas_points: a.data.handles.points.map((p) => viewport.worldToCanvas(p)),
        on_screen: viewport.getCurrentImageId() === a.metadata.referencedImageId,
      };
    });
});

try {
  // 1. the study: AI boxes drawn from the findings API
  const page = await open(`/viewer/ldh-review?StudyInstanceUIDs=${LDH_STUDY}`);
  await page.waitForFunction(() => window.ldhReview?.state === 'ready', null, { timeout: 120000 });
  out.auto_jump = await page.waitForFunction(showsABox, null, { timeout: 10000 }).then(() => true, () => false);
  await page.waitForTimeout(1000); // let the viewport render the annotations
  out.findings = await page.evaluate(() => window.ldhReview.findings);
  out.slice_sops = await page.evaluate(() => window.ldhReview.series.slices.map((s) => s.sop));
  out.drawn = await drawnBoxes(page);
  out.rows = await page.$$eval('[data-ldh=row]', (rows) => rows.map((r) => r.dataset.level));
  out.disclaimer = await page.textContent('[data-ldh=disclaimer]');
  out.initial_state = await panelState(page);
  await shot(page, '01-ai-boxes.png');

  // 2. clicking a row's probability jumps to its key slice
  const target = out.findings.discs.find((d) => d.slice_index !== out.drawn.find((b) => b.on_screen).slice_index) || out.findings.discs[0];
  await page.click(`[data-ldh=row][data-level="${target.level}"] [data-ldh=jump]`);
  await page.waitForFunction((sop) => window.ldhReview.series.byImageId.get(window.ldhReview.viewport.getCurrentImageId())?.sop === sop,
    target.sop_instance_uid, { timeout: 10000 }).catch(() => {}); // a miss is reported below, not here
  await page.waitForTimeout(800);
  out.jump = { level: target.level, sop: target.sop_instance_uid,
    shown_sop: await page.evaluate(() => window.ldhReview.series.byImageId.get(window.ldhReview.viewport.getCurrentImageId())?.sop) };

  // 3. "Accept AI" as is (a later correction supersedes it)
  await page.click('[data-ldh=accept]');
  await page.waitForFunction(() => window.ldhReview.saved?.kind === 'accept', null, { timeout: 60000 });
  out.accepted = {
    record_id: await page.evaluate(() => window.ldhReview.saved.record_id),
    toast: await page.evaluate(() => document.body.innerText.includes('AI result accepted as')),
    status: await page.textContent('[data-ldh=status]'),
  };

  // 4. drag one box by its top edge, then resize it from its bottom-right corner, with the mouse
  const box = (await drawnBoxes(page)).find((b) => b.on_screen);
  const { level } = box;
  const boxOf = (l, ai) => page.evaluate(([lv, a]) => window.ldhReview.corrections().find((c) => c.level === lv && (a === undefined || c.ai_level === a)).box, [l, ai]);
  const rect = await page.evaluate(() => { const r = window.ldhReview.viewport.element.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; });
  const at = ([x, y]) => [rect[0] + x, rect[1] + y];
  const drag = async (from, delta) => {
    await page.mouse.move(...from);
    await page.mouse.down();
    for (let i = 1; i <= 8; i += 1) await page.mouse.move(from[0] + (delta[0] * i) / 8, from[1] + (delta[1] * i) / 8);
    await page.mouse.up();
    await page.waitForTimeout(400);
  };
  const before = await boxOf(level);
  const [tl, tr] = box.canvas_points;
  await drag(at([(tl[0] + tr[0]) / 2, (tl[1] + tr[1]) / 2]), [40, 25]);
  out.drag = {
    level, before, screen_delta: [40, 25], after: await boxOf(level),
    // source pixels per CSS pixel along the screen's x axis (the sagittal image is shown unrotated)
    scale: await page.evaluate(() => {
      const { viewport, series } = window.ldhReview;
      const a = viewport.canvasToWorld([100, 100]);
      const b = viewport.canvasToWorld([101, 100]);
      return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]) / series.slices[0].plane.colSpacing;
    }),
  };
  const moved = (await drawnBoxes(page)).find((b) => b.uid === box.uid);
  await drag(at(moved.canvas_points[3]), [30, 20]);
  out.resize = { before: out.drag.after, after: await boxOf(level), screen_delta: [30, 20] };
  out.dirty_state = await panelState(page);
  await shot(page, '02-dragged.png');

  // 5. toggle herniation of a second disc, delete a third, relabel a fourth to the deleted level, and draw a
  //    new box, which takes the level the relabelled one left free
  const [toggled, deleted, relabelled] = out.findings.discs.map((d) => d.level).filter((l) => l !== level);
  const row = (l, what) => `[data-ldh=row][data-level="${l}"] [data-ldh=${what}]`;
  await page.click(row(toggled, 'herniation'));
  await page.click(row(deleted, 'delete'));
  await page.selectOption(row(relabelled, 'level'), deleted);
  await page.click('[data-ldh=add]');
  const from = [rect[2] * 0.12, rect[3] * 0.75];
  const size = [70, 45];
  await drag(at(from), size);
  await page.waitForFunction(() => document.querySelectorAll('[data-ldh=row]').length === 5, null, { timeout: 10000 });
  out.edits = {
    toggled, deleted, relabelled,
    rows: await page.$$eval('[data-ldh=row]', (rows) => rows.map((r) => r.dataset.level)),
    added: await boxOf(relabelled, null),
    // what Cornerstone itself says the drawn screen rectangle covers, in source pixels
    added_expected: await page.evaluate(([a, b]) => {
      const { viewport } = window.ldhReview;
      const id = viewport.getCurrentImageId();
      const [p, q] = [a, b].map((c) => window.cornerstone.utilities.worldToImageCoords(id, viewport.canvasToWorld(c)));
      return [Math.min(p[0], q[0]), Math.min(p[1], q[1]), Math.max(p[0], q[0]), Math.max(p[1], q[1])];
    }, [from, [from[0] + size[0], from[1] + size[1]]]),
  };
  await shot(page, '03-edited.png');

  // 6. save: corrections go to the feedback API with the reviewer's identity
  await page.click('[data-ldh=save]');
  await page.waitForFunction(() => window.ldhReview.saved, null, { timeout: 60000 });
  // the panel re-renders after the save resolves: wait for it (a loaded machine takes longer than a fixed pause),
  // and read whatever state it settled in
  await page.waitForFunction(() => document.querySelector('[data-ldh=status]')?.dataset.state === 'clean', null,
    { timeout: 10000 }).catch(() => {});
  out.saved = await page.evaluate(() => window.ldhReview.saved);
  out.saved_state = await panelState(page);
  out.toast = await page.evaluate(() => document.body.innerText.includes('Corrections saved'));
  out.final = await page.evaluate(() => window.ldhReview.corrections());
  await shot(page, '04-saved.png');

  // 7. a new unsaved change: leaving the page asks first (Chromium's beforeunload dialog, dismissed: we stay)
  await page.click(row(toggled, 'herniation'));
  out.dirty_before_leaving = await page.evaluate(() => window.ldhReview.dirty);
  // OHIF's own back arrow (in-app navigation, no unload) asks too; dismissed: still on the study, still dirty
  const confirmed = dismissNext(page);
  await page.click('[data-cy="return-to-work-list"]');
  out.return_dialog = { type: await confirmed, path: new URL(page.url()).pathname, dirty: await page.evaluate(() => window.ldhReview?.dirty) };
  const asked = dismissNext(page);
  page.goto('about:blank').catch(() => {});
  out.unload_dialog = await asked;
  await page.close();

  // 8. a refused (expired) key: a clear message, a field for a new key
  const expired = await open(`/viewer/ldh-review?StudyInstanceUIDs=${LDH_STUDY}`, { key: 'expired-key' });
  await expired.waitForSelector('[data-ldh=status][data-state=auth]', { timeout: 60000 });
  out.expired = await expired.textContent('[data-ldh=status]');
  await shot(expired, '05-expired-key.png');
  //    a valid key goes on; the panel says who reviewed the study last
  const useKey = async (key) => {
    await expired.fill('[data-ldh=token]', key);
    await expired.click('[data-ldh=use-token]');
    await expired.waitForFunction(() => window.ldhReview?.state === 'ready', null, { timeout: 60000 });
  };
  await useKey(LDH_KEY);
  out.reopened = {
    status: await expired.textContent('[data-ldh=status]'),
    source: await expired.textContent('[data-ldh=source]'),
    boxes: await expired.evaluate(() => window.ldhReview.corrections()),
    accept_disabled: await expired.$eval('[data-ldh=accept]', (b) => b.disabled),
  };
  //    the key is refused while saving: nothing saved, a clear message; the edits wait for a new key
  const [first, second] = out.findings.discs.map((d) => d.level);
  await expired.click(`[data-ldh=row][data-level="${first}"] [data-ldh=herniation]`);
  await expired.evaluate(() => sessionStorage.setItem('ldh-assist-token', 'revoked-key'));
  await expired.click('[data-ldh=save]');
  await expired.waitForSelector('[data-ldh=status][data-state=auth]', { timeout: 30000 });
  out.refused_save = {
    message: await expired.textContent('[data-ldh=status]'),
    toast: await expired.evaluate(() => document.body.innerText.includes('nothing was saved')),
  };
  await useKey(LDH_KEY);
  out.refused_save.after_new_key = {
    state: await expired.evaluate(() => document.querySelector('[data-ldh=status]').dataset.state),
    rows: await expired.$$eval('[data-ldh=row]', (rows) => rows.length),
    boxes: await expired.evaluate(() => window.cornerstoneTools.annotation.state.getAllAnnotations().filter((a) => a.metadata.toolName === 'RectangleROI').length),
  };
  //    a refusal by the API (one level twice: 422) is a toast with the API's message
  await expired.selectOption(`[data-ldh=row][data-level="${second}"] [data-ldh=level]`, first);
  await expired.click('[data-ldh=save]');
  await expired.waitForFunction(() => document.body.innerText.includes('Not saved:'), null, { timeout: 30000 });
  out.refused_by_api = await expired.evaluate(() => document.body.innerText.split('\n').find((l) => l.includes('Not saved:')));
  await shot(expired, '05b-refused-by-api.png');
  await expired.close();

  // 9. a study with no AI result: "not analysed", nothing to save
  const none = await open(`/viewer/ldh-review?StudyInstanceUIDs=${LDH_UNANALYSED}`);
  await none.waitForSelector('[data-ldh=status][data-state=not-analysed]', { timeout: 60000 });
  out.not_analysed = { text: await none.textContent('[data-ldh=status]'), save_buttons: await none.$$eval('[data-ldh=save], [data-ldh=accept]', (b) => b.length) };
  await shot(none, '06-not-analysed.png');
  await none.close();

  // 10. our extension module fails to load: the plain viewer still works and says why
  const broken = await open('/viewer/', { route: { url: '**/viewer/ldh/extension.js', handler: (r) => r.fulfill({ status: 500, body: 'boom' }) } });
  await broken.waitForSelector('#ldh-assist-banner', { timeout: 60000 });
  await broken.waitForFunction(() => document.body.innerText.includes('Study List'), null, { timeout: 60000 });
  out.broken = {
    banner: await broken.textContent('#ldh-assist-banner'),
    status: await broken.evaluate(() => window.LDH_ASSIST_STATUS),
    study_list: await broken.evaluate(() => document.body.innerText.includes('Study List')),
  };
  await shot(broken, '07-plugin-failed.png');
  await broken.close();
} catch (err) {
  out.error = String(err.stack || err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
