// Source pixels <-> patient coordinates for one DICOM image plane. No OHIF, no DOM: unit-tested under node.
//
// Boxes are [x0, y0, x1, y1] pixel *edges* in DICOM SCOORD image coordinates (what findings.json and our SR
// hold): (0, 0) is the top-left corner of the top-left pixel, so that pixel's centre is (0.5, 0.5).
// ImagePositionPatient is the centre of that pixel; column index grows along ImageOrientationPatient[0..2]
// (spaced PixelSpacing[1]), row index along ImageOrientationPatient[3..5] (spaced PixelSpacing[0]).

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const unit = (v) => {
  const n = Math.hypot(...v);
  if (!(n > 0)) throw new Error(`degenerate direction ${JSON.stringify(v)}`);
  return v.map((c) => c / n);
};

/** An image plane from DICOM attributes (numbers or numeric strings, as in DICOM JSON). */
export function plane({ ImagePositionPatient, ImageOrientationPatient, PixelSpacing }) {
  const nums = (v, n, what) => {
    const out = (v || []).map(Number);
    if (out.length !== n || out.some((x) => !Number.isFinite(x))) throw new Error(`${what} must be ${n} numbers`);
    return out;
  };
  const origin = nums(ImagePositionPatient, 3, 'ImagePositionPatient');
  const iop = nums(ImageOrientationPatient, 6, 'ImageOrientationPatient');
  const [rowSpacing, colSpacing] = nums(PixelSpacing, 2, 'PixelSpacing');
  if (!(rowSpacing > 0 && colSpacing > 0)) throw new Error('PixelSpacing must be positive');
  const row = unit(iop.slice(0, 3));
  const col = unit(iop.slice(3, 6));
  if (Math.abs(dot(row, col)) > 1e-3) throw new Error('ImageOrientationPatient rows and columns are not orthogonal');
  return { origin, row, col, normal: cross(row, col), rowSpacing, colSpacing };
}

/** SCOORD image point (x = column, y = row) -> patient coordinates (mm). */
export function pixelToPatient(p, [x, y]) {
  const a = (x - 0.5) * p.colSpacing;
  const b = (y - 0.5) * p.rowSpacing;
  return [0, 1, 2].map((i) => p.origin[i] + a * p.row[i] + b * p.col[i]);
}

/** Patient point -> SCOORD image point, projected onto the plane. */
export function patientToPixel(p, point) {
  const d = [0, 1, 2].map((i) => point[i] - p.origin[i]);
  return [dot(d, p.row) / p.colSpacing + 0.5, dot(d, p.col) / p.rowSpacing + 0.5];
}

/** Distance (mm) of a patient point from the plane: tells which slice an annotation lies on. */
export function distanceFromPlane(p, point) {
  return Math.abs(dot([0, 1, 2].map((i) => point[i] - p.origin[i]), p.normal));
}

/** A box as the 4 corners Cornerstone's RectangleROI keeps: top-left, top-right, bottom-left, bottom-right. */
export function boxToCorners(p, [x0, y0, x1, y1]) {
  return [[x0, y0], [x1, y0], [x0, y1], [x1, y1]].map((xy) => pixelToPatient(p, xy));
}

/** Corners (any order, any drag direction) -> the integer pixel-edge box they span. */
export function cornersToBox(p, corners) {
  const px = corners.map((c) => patientToPixel(p, c));
  const xs = px.map((c) => c[0]);
  const ys = px.map((c) => c[1]);
  const r = (v) => Math.round(v) + 0; // + 0 turns -0 into 0
  return [r(Math.min(...xs)), r(Math.min(...ys)), r(Math.max(...xs)), r(Math.max(...ys))];
}

/**
 * Slice order of a series as our loader sorts it (stable sort by position along the slice normal), so that
 * findings' slice_index k is planes[order[k]].
 */
export function sliceOrder(planes) {
  if (!planes.length) return [];
  const n = planes[0].normal;
  return planes.map((p, i) => [dot(p.origin, n), i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);
}
