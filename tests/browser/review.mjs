// Drives the LDH Assist web page in headless Debian Chromium (playwright-core, never a downloaded browser):
// upload an MHA, wait for the AI boxes, drag one, edit another with the keyboard, delete + add one, save.
// Prints one JSON object (what was done, in source pixels) on stdout; screenshots go to LDH_ARTIFACTS.
//
// env: LDH_URL (server), LDH_KEY (API key, optional), LDH_MHA (file to upload), LDH_ARTIFACTS (folder),
//      LDH_CHROMIUM (default /usr/bin/chromium)
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.LDH_URL;
const key = process.env.LDH_KEY || "";
const mha = process.env.LDH_MHA;
const out = process.env.LDH_ARTIFACTS || "test-artifacts";
mkdirSync(out, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "ldh-chromium-"));

// a fresh --user-data-dir: playwright passes `profile` as Chromium's --user-data-dir
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.LDH_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1366, height: 768 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const result = { console: [] };
try {
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") result.console.push(m.text()); });
  page.on("pageerror", (e) => result.console.push(String(e)));
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]");
  if (key) {
    await page.fill("#api-key", key);
    await page.click("#api-key-save");
  }
  await page.screenshot({ path: join(out, "01-upload.png") });

  await page.setInputFiles("#file-input", mha);
  const t0 = Date.now();
  await page.click("#upload-button");
  await page.waitForSelector("#boxes g.box", { timeout: 180000 });
  result.upload_to_boxes_ms = Date.now() - t0;
  await page.waitForFunction(() => document.getElementById("slice-img").complete);
  await page.screenshot({ path: join(out, "02-ai-boxes.png") });

  const boxes = async () => page.$$eval("#boxes g.box", (gs) => gs.map((g) => ({
    level: g.dataset.level, box: ["x0", "y0", "x1", "y1"].map((k) => Number(g.dataset[k])),
    herniation: g.dataset.herniation === "true", slice: Number(g.dataset.slice),
  })));
  const onSlice = await boxes();
  result.ai_boxes_on_slice = onSlice;

  // 1. drag the first box's body with the mouse
  const first = onSlice[0];
  const body = page.locator(`#boxes g.box[data-level="${first.level}"] rect.body`);
  const bb = await body.boundingBox();
  const scale = await page.evaluate(() => window.ldh.cols / document.getElementById("slice-img").getBoundingClientRect().width);
  const dx = 36, dy = 22; // screen pixels (down-right: the top disc may sit near the image edge)
  const cx = bb.x + bb.width / 2, cy = bb.y + bb.height / 2;
  await page.mouse.move(cx, cy);
  await page.mouse.down();
  await page.mouse.move(cx + dx / 2, cy + dy / 2, { steps: 4 });
  await page.mouse.move(cx + dx, cy + dy, { steps: 4 });
  await page.mouse.up();
  const dragged = (await boxes()).find((b) => b.level === first.level);
  result.drag = { level: first.level, before: first.box, after: dragged.box, screen_delta: [dx, dy], scale };

  // 1b. resize it with its bottom-right handle (the box is selected, so its handles are shown)
  const handle = page.locator(`#boxes g.box[data-level="${first.level}"] rect.handle[data-part="se"]`);
  const hb = await handle.boundingBox();
  const hx = hb.x + hb.width / 2, hy = hb.y + hb.height / 2;
  await page.mouse.move(hx, hy);
  await page.mouse.down();
  await page.mouse.move(hx + 15, hy + 9, { steps: 5 });
  await page.mouse.up();
  const resized = (await boxes()).find((b) => b.level === first.level);
  result.resize = { before: dragged.box, after: resized.box, screen_delta: [15, 9] };

  // 2. keyboard: select the second box with Tab, move it right 3 and down 10, toggle herniation
  const second = onSlice[1];
  await page.focus("#stage");
  let focused = null;
  for (let i = 0; i < 8 && focused !== second.level; i++) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => document.activeElement && document.activeElement.dataset && document.activeElement.dataset.level);
  }
  for (let i = 0; i < 3; i++) await page.keyboard.press("ArrowRight");
  await page.keyboard.press("Shift+ArrowDown");
  await page.keyboard.press("h");
  const keyed = (await boxes()).find((b) => b.level === second.level);
  result.keyboard = { level: second.level, focused, before: second.box, after: keyed.box,
                      herniation_before: second.herniation, herniation_after: keyed.herniation };

  // 2b. relabel that box with a digit key: to a free level if there is one, else swap with L1-L2
  const levels = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"];
  const taken = await page.evaluate(() => window.ldh.boxes.map((b) => b.level));
  const target = levels.find((l) => !taken.includes(l)) || (second.level === "L1-L2" ? "L2-L3" : "L1-L2");
  await page.keyboard.press(String(levels.indexOf(target) + 1));
  result.relabel = { from: second.level, to: target, swapped: taken.includes(target),
                     selected_level: await page.evaluate(() => window.ldh.boxes.find((b) => b.id === window.ldh.selected).level) };

  // 3. delete an AI box that was neither dragged nor edited above: jump to it with its "show" button (it may sit
  //    on another slice) and press Delete on the stage; then add one with N (it takes the first free level)
  const untouched = await page.evaluate(([a, b]) => window.ldh.boxes.map((x) => x.level).filter((l) => l !== a && l !== b),
                                        [first.level, target]);
  const last = { level: untouched[untouched.length - 1] };
  await page.click(`button[aria-label="show ${last.level}"]`);
  await page.waitForFunction((level) => {  // "show" loads the slice asynchronously, then selects the box
    const sel = window.ldh.boxes.find((b) => b.id === window.ldh.selected);
    return sel && sel.level === level && document.getElementById("slice-img").complete;
  }, last.level, { timeout: 30000 });
  await page.focus("#stage");
  await page.keyboard.press("Delete");
  result.deleted = { level: last.level, remaining: (await boxes()).map((b) => b.level) };
  const levelsBefore = await page.evaluate(() => window.ldh.boxes.map((b) => b.level));
  await page.keyboard.press("n");
  const added = (await boxes()).find((b) => !levelsBefore.includes(b.level));
  result.added = added || null;
  // 3b. draw one more box with the mouse in "Add box" mode, if a level is still free
  const free = await page.evaluate(() => ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"].find((l) => !window.ldh.boxes.some((b) => b.level === l)) || null);
  if (free) {
    await page.click("#add-box");
    const img = await page.locator("#slice-img").boundingBox();
    const x0 = img.x + img.width * 0.75, y0 = img.y + img.height * 0.8;
    await page.mouse.move(x0, y0);
    await page.mouse.down();
    await page.mouse.move(x0 + 50, y0 + 30, { steps: 5 });
    await page.mouse.up();
    const drawn = (await boxes()).find((b) => b.level === free);
    result.drawn = { level: free, box: drawn ? drawn.box : null, screen: [x0 - img.x, y0 - img.y, x0 + 50 - img.x, y0 + 30 - img.y] };
  }
  await page.screenshot({ path: join(out, "03-edited.png") });

  // layout at 1366x768: the save button and the whole image are on screen
  result.layout = await page.evaluate(() => {
    const r = (id) => document.getElementById(id).getBoundingClientRect().toJSON();
    return { save: r("save-corrections"), image: r("slice-img"), panel: r("disc-rows"),
             scroll_width: document.documentElement.scrollWidth, scroll_height: document.documentElement.scrollHeight };
  });

  // 4. save
  await page.click("#save-corrections");
  await page.waitForFunction(() => /Saved/.test(document.getElementById("save-status").textContent), null, { timeout: 60000 });
  result.save_status = await page.textContent("#save-status");
  result.record_id = await page.evaluate(() => window.ldh.lastRecord && window.ldh.lastRecord.record_id);
  result.final_boxes = await page.evaluate(() => window.ldh.boxes.map((b) => ({
    level: b.level, slice: b.slice, box: [b.x0, b.y0, b.x1, b.y1], herniation: b.herniation, ai_level: b.ai_level })));
  await page.screenshot({ path: join(out, "04-saved.png") });

  // 5. a refused upload shows its precise message on the page
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]");
  await page.setInputFiles("#file-input", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not an image") });
  await page.click("#upload-button");
  await page.waitForSelector("#upload-error:not([hidden])", { timeout: 30000 });
  result.bad_upload_message = await page.textContent("#upload-error");
  await page.screenshot({ path: join(out, "05-bad-upload.png") });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + "\n");
