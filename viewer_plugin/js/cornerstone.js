// What the review needs from OHIF's Cornerstone (window.cornerstone / window.cornerstoneTools, exposed by the
// prebuilt viewer): the analysed series' images and planes, RectangleROI annotations, slice jumps.

import { boxToCorners, cornersToBox, plane, sliceOrder } from './geometry.js';

export const TOOL = 'RectangleROI';
const cs = () => window.cornerstone;
const tools = () => window.cornerstoneTools;

/** The series as our loader sees it: per slice_index, its imageId, SOP Instance UID and plane. */
export class Series {
  constructor(displaySet, imageIdOf) {
    const images = displaySet.images || displaySet.instances || [];
    const planes = images.map((i) => plane(i));
    this.slices = sliceOrder(planes).map((k) => ({
      imageId: images[k].imageId || imageIdOf(images[k]),
      sop: images[k].SOPInstanceUID,
      plane: planes[k],
      frameOfReference: images[k].FrameOfReferenceUID,
    }));
    this.byImageId = new Map(this.slices.map((s, index) => [s.imageId, { ...s, index }]));
  }

  slice(index, sop) {
    const byIndex = this.slices[index];
    if (sop && byIndex?.sop !== sop) {
      const found = this.slices.find((s) => s.sop === sop);
      if (found) return found;
    }
    if (!byIndex) throw new Error(`slice ${index} is not in the series (it has ${this.slices.length})`);
    return byIndex;
  }
}

/** The Cornerstone viewport (and OHIF viewport id) currently showing one of the series' images. */
export function viewportShowing(series) {
  for (const { viewport } of cs().getEnabledElements()) {
    const ids = viewport.getImageIds ? viewport.getImageIds() : [];
    if (ids.some((id) => series.byImageId.has(id))) return viewport;
  }
  return null;
}

export function addBox(viewport, slice, box, label) {
  const p = slice.plane;
  const annotation = {
    annotationUID: crypto.randomUUID(),
    highlighted: false,
    invalidated: true,
    isLocked: false,
    isVisible: true,
    metadata: {
      toolName: TOOL,
      FrameOfReferenceUID: slice.frameOfReference,
      referencedImageId: slice.imageId,
      viewPlaneNormal: [...p.normal],
      viewUp: p.col.map((v) => -v),
    },
    data: { label, handles: { points: boxToCorners(p, box), activeHandleIndex: null, textBox: { hasMoved: false } }, cachedStats: {} },
  };
  tools().annotation.state.addAnnotation(annotation, viewport.element);
  return annotation.annotationUID;
}

/** Every RectangleROI on the series' images: {uid, index (slice), box (source pixel edges), annotation}. */
export function boxesOn(series) {
  const all = tools().annotation.state.getAllAnnotations() || [];
  return all
    .filter((a) => a.metadata?.toolName === TOOL && series.byImageId.has(a.metadata.referencedImageId))
    .map((a) => {
      const s = series.byImageId.get(a.metadata.referencedImageId);
      return { uid: a.annotationUID, index: s.index, box: cornersToBox(s.plane, a.data.handles.points), annotation: a };
    });
}

/** Rectangles on our viewport show their label (level, P, herniation) instead of area / mean / max statistics. */
export function showLabelsOnly(toolGroup) {
  if (toolGroup) toolGroup.setToolConfiguration(TOOL, { getTextLines: (data) => (data.label ? [data.label] : []) });
}

export function removeBox(uid) {
  tools().annotation.state.removeAnnotation(uid);
}

export function render(viewport) {
  if (viewport) viewport.render();
}

export function jumpTo(viewport, imageId, uid) {
  const index = viewport.getImageIds().indexOf(imageId);
  if (index >= 0) viewport.setImageIdIndex(index);
  if (uid) tools().annotation.selection.setAnnotationSelected(uid, true, false);
  viewport.render();
}

/** Calls back on any annotation change (added, moved, resized, removed, drawn). Returns the unsubscribe. */
export function onAnnotationChange(callback) {
  const names = ['ANNOTATION_ADDED', 'ANNOTATION_MODIFIED', 'ANNOTATION_COMPLETED', 'ANNOTATION_REMOVED'];
  const events = names.map((n) => tools().Enums.Events[n]).filter(Boolean);
  const target = cs().eventTarget;
  events.forEach((e) => target.addEventListener(e, callback));
  return () => events.forEach((e) => target.removeEventListener(e, callback));
}
