// One study's review inside OHIF: the AI findings (or the corrections in force) from our API drawn as editable
// RectangleROIs, the panel (plain DOM: React is not reachable from a runtime module), and accept / save through
// POST /api/studies/{study}/feedback.

import { ApiError, call, token } from './api.js';
import * as cst from './cornerstone.js';

const LEVELS = ['L1-L2', 'L2-L3', 'L3-L4', 'L4-L5', 'L5-S1'];
const WAIT_MS = 90000;

// a throwing DOM handler would reach OHIF's window 'error' listener, which replaces the viewer with an error page
const guarded = (handler) => (event) => {
  try {
    handler(event);
  } catch (err) {
    if (window.ldhReview) window.ldhReview.fail(err); else console.error('LDH review', err);
  }
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) node.addEventListener(k.slice(2), guarded(v));
    else if (k === 'style') node.style.cssText = v;
    else if (v !== false && v != null) node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.filter((c) => c != null && c !== false));
  return node;
}

/** What the box itself shows (Cornerstone draws data.label through the getTextLines set in attach()). */
const labelOf = (m) => `${m.level} · ${m.probability == null ? 'added' : `P ${Math.round(m.probability * 100)} %`} · ${m.herniation ? 'herniation' : 'no herniation'}`;

const BUTTON = 'margin:4px 6px 0 0;padding:4px 10px;border-radius:4px;border:1px solid #3a6ea5;background:#1c3d5e;color:#fff;cursor:pointer';

export class ReviewSession {
  constructor({ servicesManager, commandsManager, extensionManager }) {
    this.services = servicesManager.services;
    this.commands = commandsManager;
    this.extensions = extensionManager;
    this.config = window.LDH_ASSIST || { apiBase: '/api', authRequired: true };
    this.root = el('div', { 'data-ldh': 'panel', style: 'padding:8px;color:#e0e6ee;font:13px sans-serif' });
    this.meta = new Map(); // annotationUID -> {level, herniation, probability, aiLevel}
    this.baseline = '[]';
    this.study = new URLSearchParams(window.location.search).get('StudyInstanceUIDs')?.split(',')[0];
    this.unsubscribe = null;
    this.onUnload = (e) => {
      if (this.dirty) { e.preventDefault(); e.returnValue = ''; }
    };
    window.addEventListener('beforeunload', this.onUnload);
    // OHIF's back-to-study-list arrow navigates inside the app (no unload): ask before React sees the click
    this.onLeave = (e) => {
      if (this.dirty && e.target.closest?.('[data-cy="return-to-work-list"]')
          && !window.confirm('Unsaved box changes will be lost. Leave this study?')) {
        e.stopPropagation();
        e.preventDefault();
      }
    };
    window.addEventListener('click', this.onLeave, true);
    window.ldhReview = this; // for tests and support: the live session
    this.start().catch((err) => this.fail(err));
  }

  /** Any unexpected error ends up here, never in OHIF's error boundary (which would replace the viewer). */
  fail(err) {
    console.error('LDH review', err);
    this.message('error', `LDH review stopped: ${err.message}`);
  }

  dispose() {
    window.removeEventListener('beforeunload', this.onUnload);
    window.removeEventListener('click', this.onLeave, true);
    if (this.unsubscribe) this.unsubscribe();
    this.meta.forEach((_, uid) => cst.removeBox(uid));
    if (window.ldhReview === this) window.ldhReview = null;
  }

  toast(type, message) {
    this.services.uiNotificationService?.show({ title: 'LDH Assist', message, type, duration: type === 'error' ? 10000 : 4000 });
  }

  show(...content) {
    const head = el('div', {},
      el('div', { style: 'font-weight:bold;font-size:15px' }, 'LDH review'),
      el('div', { 'data-ldh': 'disclaimer', style: 'margin:4px 0 8px;padding:3px 6px;background:#6b4e00;color:#fff;border-radius:3px;display:inline-block' },
        'AI output, not a diagnosis'));
    this.root.replaceChildren(head, ...content);
  }

  message(kind, text, ...extra) {
    this.state = kind;
    this.show(el('div', { 'data-ldh': 'status', 'data-state': kind, style: 'margin:6px 0' }, text), ...extra);
  }

  async start() {
    if (!this.study) return this.message('error', 'No study in the address (StudyInstanceUIDs is missing).');
    if (this.config.authRequired && !token.get()) return this.askToken('Enter your LDH Assist reviewer key to see the AI result.');
    this.message('loading', 'Loading the AI result…');
    try {
      const base = `/studies/${encodeURIComponent(this.study)}`;
      this.findings = await call(this.config.apiBase, 'GET', `${base}/findings`);
      this.saved = (await call(this.config.apiBase, 'GET', `${base}/feedback`)).current; // the review in force
    } catch (err) {
      return this.failedLoad(err);
    }
    await this.attach();
  }

  failedLoad(err) {
    if (err.status === 401) return this.askToken(`Your key was refused (${err.message}): it may have expired. Enter a valid key.`);
    if (err.status === 404) return this.message('not-analysed', 'Not analysed: LDH Assist has no AI result for this study yet. Nothing to review or save.');
    const retry = el('button', { style: BUTTON, onclick: () => this.start() }, 'Retry');
    return this.message('error', err.status === 409 ? err.message : `The AI result could not be loaded: ${err.message}`, retry);
  }

  /** Asks for a key; `resume` goes on with it (load the study, or back to the unsaved boxes after a refused save). */
  askToken(text, resume = () => this.start()) {
    const input = el('input', { type: 'password', 'data-ldh': 'token', placeholder: 'reviewer key', style: 'width:100%;margin:6px 0;padding:4px;color:#000' });
    const use = () => { if (input.value.trim()) { token.set(input.value); resume(); } };
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') use(); });
    token.clear();
    this.message('auth', text, input, el('button', { style: BUTTON, 'data-ldh': 'use-token', onclick: use }, 'Use key'));
  }

  /** Waits for the analysed series in a viewport, then draws the AI boxes. */
  async attach() {
    const { displaySetService, viewportGridService } = this.services;
    const seriesUID = this.findings.series_instance_uid;
    const deadline = Date.now() + WAIT_MS;
    const until = async (what, probe) => {
      for (;;) {
        const value = probe();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    this.message('loading', 'Waiting for the analysed series…');
    const displaySet = await until(`series ${seriesUID} in the viewer`, () =>
      displaySetService.getActiveDisplaySets().find((d) => d.SeriesInstanceUID === seriesUID && d.images?.length));
    const dataSource = this.extensions.getActiveDataSource()[0];
    this.series = new cst.Series(displaySet, (instance) => dataSource.getImageIdsForInstance({ instance }));
    // Ask for the series only once the grid has a viewport: on a busy machine the display sets arrive before
    // OHIF lays out the grid, and asking then throws "ViewportId is required". Ask again if the hanging
    // protocol puts another series there after us.
    let asked = 0;
    this.viewport = await until('the series to be displayed', () => {
      const shown = cst.viewportShowing(this.series);
      const { activeViewportId } = viewportGridService.getState();
      if (!shown && activeViewportId && Date.now() - asked > 2000) {
        asked = Date.now();
        viewportGridService.setDisplaySetsForViewport({ viewportId: activeViewportId, displaySetInstanceUIDs: [displaySet.displaySetInstanceUID] });
      }
      return shown;
    });
    cst.showLabelsOnly(this.services.toolGroupService.getToolGroupForViewport(this.viewport.id));
    // the first image loaded: OHIF has set up the stack, so our jump to the first row's slice is not undone
    await until('the first image', () => this.viewport.getCurrentImageId?.() && this.viewport.getImageData?.());
    this.drawBoxes();
  }

  /** The boxes to start from: the corrections in force if the study has them, else the AI's. */
  startingBoxes() {
    if (this.saved?.kind === 'correction') {
      return this.saved.discs.map((d) => ({ ...d, probability: d.ai ? d.ai.probability : null, aiLevel: d.ai ? d.ai.level : null }));
    }
    return this.findings.discs.map((d) => ({ ...d, aiLevel: d.level }));
  }

  drawBoxes() {
    for (const d of this.startingBoxes()) {
      const slice = this.series.slice(d.slice_index, d.sop_instance_uid);
      const m = { level: d.level, herniation: d.herniation, probability: d.probability, aiLevel: d.aiLevel };
      this.meta.set(cst.addBox(this.viewport, slice, d.box, labelOf(m)), m);
    }
    this.baseline = JSON.stringify(this.corrections());
    this.drawn = true;
    this.unsubscribe = cst.onAnnotationChange(() => this.changed());
    this.state = 'ready';
    const first = this.rows()[0];
    if (first) this.jump(first.uid);
    this.renderPanel();
  }

  /** Boxes on the series as they are now, joined with what the panel knows of each. */
  rows() {
    const taken = new Set([...this.meta.values()].map((m) => m.level));
    return cst.boxesOn(this.series).map((b) => {
      if (!this.meta.has(b.uid)) { // drawn by the reviewer: the first free level, no herniation
        const level = LEVELS.find((l) => !taken.has(l)) || LEVELS[0];
        taken.add(level);
        const m = { level, herniation: false, probability: null, aiLevel: null };
        this.meta.set(b.uid, m);
        b.annotation.data.label = labelOf(m);
      }
      return { ...b, ...this.meta.get(b.uid) };
    }).sort((a, b) => LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level) || a.index - b.index);
  }

  corrections() {
    return this.rows().map((r) => ({ level: r.level, slice_index: r.index, box: r.box, herniation: r.herniation, ai_level: r.aiLevel }));
  }

  get dirty() {
    return this.drawn && JSON.stringify(this.corrections()) !== this.baseline;
  }

  changed() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      try {
        const live = new Set(cst.boxesOn(this.series).map((b) => b.uid));
        [...this.meta.keys()].filter((uid) => !live.has(uid)).forEach((uid) => this.meta.delete(uid));
        this.renderPanel();
      } catch (err) {
        this.fail(err);
      }
    });
  }

  jump(uid) {
    const row = this.rows().find((r) => r.uid === uid);
    if (row) cst.jumpTo(this.viewport, row.annotation.metadata.referencedImageId, uid);
  }

  edit(uid, change) {
    const m = this.meta.get(uid);
    Object.assign(m, change);
    const row = this.rows().find((r) => r.uid === uid);
    if (row) row.annotation.data.label = labelOf(m);
    cst.render(this.viewport);
    this.renderPanel();
  }

  remove(uid) {
    cst.removeBox(uid);
    this.meta.delete(uid);
    cst.render(this.viewport);
    this.renderPanel();
  }

  addBox() {
    this.commands.runCommand('setToolActive', { toolName: cst.TOOL });
    this.toast('info', 'Draw the new box on the image; then pick its level in the list.');
  }

  async submit(action) {
    const body = action === 'accept' ? { action } : { action, corrections: this.corrections() };
    this.busy = true;
    this.renderPanel();
    try {
      const out = await call(this.config.apiBase, 'POST', `/studies/${encodeURIComponent(this.study)}/feedback`, body);
      this.saved = out.record;
      if (action !== 'accept') this.baseline = JSON.stringify(this.corrections());
      const sent = out.sent_to?.length ? `; reviewed SR sent to ${out.sent_to.join(', ')}` : '';
      this.toast('success', `${action === 'accept' ? 'AI result accepted' : 'Corrections saved'} as ${out.record.reviewer.login}${sent}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.toast('error', 'Your key was refused (expired or revoked): nothing was saved. Enter a valid key.');
        this.busy = false;
        return this.askToken(`Your key was refused (${err.message}). Nothing was saved; enter a valid key, then save again.`,
          () => { this.state = 'ready'; this.renderPanel(); });
      }
      this.toast('error', `Not saved: ${err.message}`);
    } finally {
      this.busy = false;
    }
    this.renderPanel();
  }

  renderPanel() {
    if (this.state !== 'ready') return;
    const rows = this.rows();
    const dirty = this.dirty;
    const missing = LEVELS.filter((l) => !rows.some((r) => r.level === l));
    const corrected = this.saved?.kind === 'correction';
    const list = el('table', { 'data-ldh': 'levels', style: 'width:100%;border-collapse:collapse;margin-top:4px' },
      el('tr', { style: 'text-align:left;color:#9fb3c8' }, el('th', {}, 'Level'), el('th', {}, 'P(LDH)'), el('th', {}, 'Herniation'), el('th', {}, '')),
      ...rows.map((r) => el('tr', { 'data-ldh': 'row', 'data-level': r.level, 'data-uid': r.uid, style: 'border-top:1px solid #333;cursor:pointer',
        onclick: (e) => { if (!e.target.closest('select, input, button, label')) this.jump(r.uid); } },
        el('td', {},
          el('select', { 'data-ldh': 'level', style: 'color:#000', onchange: (e) => this.edit(r.uid, { level: e.target.value }) },
            ...LEVELS.map((l) => el('option', { value: l, selected: l === r.level }, l)))),
        el('td', { 'data-ldh': 'jump', style: 'text-decoration:underline', title: `show slice ${r.index + 1}` },
          r.probability == null ? 'added' : `${Math.round(r.probability * 100)} %`),
        el('td', {}, el('label', { style: 'cursor:pointer' },
          el('input', { type: 'checkbox', 'data-ldh': 'herniation', checked: r.herniation, onchange: (e) => this.edit(r.uid, { herniation: e.target.checked }) }),
          r.herniation ? ' present' : ' absent')),
        el('td', {}, el('button', { 'data-ldh': 'delete', title: 'delete this box', style: 'color:#fff;background:none;border:none;cursor:pointer', onclick: () => this.remove(r.uid) }, '✕')))),
      ...missing.map((l) => el('tr', { 'data-ldh': 'missing', 'data-level': l, style: 'border-top:1px solid #333;color:#7d8fa3' },
        el('td', {}, l), el('td', { colspan: 3 }, 'no box (add one if the disc is there)'))));
    const models = this.findings.models?.version || '';
    const status = this.busy ? 'Saving…' : dirty ? 'Unsaved changes'
      : this.saved ? `Reviewed (${this.saved.kind}) by ${this.saved.reviewer.login}, ${this.saved.created_at.slice(0, 16).replace('T', ' ')} UTC` : 'Not reviewed yet';
    this.show(
      el('div', { 'data-ldh': 'source', style: 'color:#9fb3c8' }, corrected ? 'Showing the corrections in force.' : 'Showing the AI result.',
        ' Click a row to show its slice. Drag, resize or draw boxes on the image.'),
      list,
      el('div', { style: 'margin-top:8px' },
        el('button', { style: BUTTON, 'data-ldh': 'add', onclick: () => this.addBox() }, 'Add box'),
        el('button', { style: BUTTON, 'data-ldh': 'accept', disabled: this.busy || dirty || corrected,
          title: corrected ? 'corrections are in force: save corrections to change them' : dirty ? 'you changed boxes: save corrections instead' : 'the AI result is right',
          onclick: () => this.submit('accept') }, 'Accept AI'),
        el('button', { style: BUTTON, 'data-ldh': 'save', disabled: this.busy || !dirty, onclick: () => this.submit('corrections') }, 'Save corrections')),
      el('div', { 'data-ldh': 'status', 'data-state': dirty ? 'dirty' : 'clean', style: 'margin-top:6px' }, status),
      el('div', { style: 'margin-top:6px;color:#7d8fa3;font-size:11px' }, `LDH Assist ${this.config.version || ""} · model ${models}`));
  }
}
