// Hydrates our SRs in OHIF's own longitudinal viewer (not our LDH mode) as a user's "track" would: loads each SR
// display set and runs OHIF's hydrateStructuredReport command, then reads the measurements OHIF made of it.
// Env: LDH_URL, LDH_STUDY, LDH_SRS (JSON list of SR SOP Instance UIDs), LDH_ARTIFACTS, LDH_CHROMIUM.
// Prints one JSON line: per SR, whether OHIF found it rehydratable and each RectangleROI in image pixels.
import { chromium } from 'playwright-core';

const { LDH_URL, LDH_STUDY, LDH_SRS, LDH_ARTIFACTS, LDH_CHROMIUM } = process.env;
const out = { console: [], srs: {} };
const browser = await chromium.launch({ executablePath: LDH_CHROMIUM || '/usr/bin/chromium', args: ['--disable-gpu', '--no-sandbox'] });
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  page.on('console', (m) => { if (m.type() === 'error') out.console.push(m.text().slice(0, 300)); });
  page.on('pageerror', (e) => out.console.push(`Uncaught ${e.message}`));
  await page.goto(new URL(`/viewer/viewer?StudyInstanceUIDs=${LDH_STUDY}`, LDH_URL).href);
  const wanted = JSON.parse(LDH_SRS);
  await page.waitForFunction((uids) => {
    const sets = window.services?.displaySetService.getActiveDisplaySets() || [];
    return uids.every((uid) => sets.some((ds) => ds.SOPInstanceUID === uid)) && window.cornerstone.getRenderingEngines()?.[0]?.getViewports()[0]?.getCurrentImageId();
  }, wanted, { timeout: 120000 });
  await page.getByText('Skip all').click({ timeout: 5000 }).catch(() => {}); // OHIF's first-visit tour hides the boxes
  for (const [n, uid] of wanted.entries()) {
    out.srs[uid] = await page.evaluate(async (sop) => {
      const { displaySetService, measurementService } = window.services;
      measurementService.clearMeasurements();
      const sr = displaySetService.getActiveDisplaySets().find((ds) => ds.SOPInstanceUID === sop);
      await sr.load();
      const rehydratable = sr.isRehydratable;
      const error = await Promise.resolve(window.commandsManager.runCommand('hydrateStructuredReport', { displaySetInstanceUID: sr.displaySetInstanceUID }))
        .then(() => null, (e) => String(e));
      const toImage = window.cornerstone.utilities.worldToImageCoords;
      const measurements = measurementService.getMeasurements().map((m) => ({
        tool: m.toolName, label: m.label, sop: m.SOPInstanceUID, finding_sites: (m.findingSites || []).map((s) => s.CodeMeaning || s.text),
        image_points: m.points.map((p) => toImage(m.referencedImageId || m.metadata.referencedImageId, p)),
        image_id: m.referencedImageId || m.metadata.referencedImageId,
      }));
      return { description: sr.SeriesDescription, rehydratable, error, measurements };
    }, uid);
    // show the slice with the most rectangles, as the user would scroll to it, and keep a picture
    const ids = out.srs[uid].measurements.map((m) => m.image_id);
    const busiest = ids.sort((a, b) => ids.filter((i) => i === b).length - ids.filter((i) => i === a).length)[0];
    if (busiest) {
      await page.evaluate((imageId) => {
        const viewport = window.cornerstone.getRenderingEngines()[0].getViewports().find((v) => v.getImageIds?.().includes(imageId));
        return viewport?.setImageIdIndex(viewport.getImageIds().indexOf(imageId));
      }, busiest);
      await page.waitForTimeout(1500); // let the viewport render the annotations
    }
    await page.screenshot({ path: `${LDH_ARTIFACTS}/sr-${n + 1}-hydrated.png` });
  }
} catch (e) {
  out.error = String(e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
