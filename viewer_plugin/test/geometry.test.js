// node --test viewer_plugin/test/ : the box <-> patient mapping on straight, oblique and flipped planes.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  boxToCorners, cornersToBox, distanceFromPlane, patientToPixel, pixelToPatient, plane, sliceOrder,
} from '../js/geometry.js';

const deg = Math.PI / 180;
// sagittal: columns run anterior->posterior (+y), rows head->feet (-z)
const SAGITTAL = { ImagePositionPatient: [-12.5, -120, 140], ImageOrientationPatient: [0, 1, 0, 0, 0, -1], PixelSpacing: [0.8, 0.7] };
// the same plane mirrored both ways (a flipped acquisition): columns run -y, rows +z
const FLIPPED = { ImagePositionPatient: [3, 110, -95], ImageOrientationPatient: [0, -1, 0, 0, 0, 1], PixelSpacing: [0.75, 0.75] };
// double-oblique: rotated 17 deg about z then 11 deg about the row axis, as DICOM strings
const a = 17 * deg, b = 11 * deg;
const rowDir = [Math.cos(a), Math.sin(a), 0];
const colDir = [-Math.sin(a) * Math.sin(b), Math.cos(a) * Math.sin(b), -Math.cos(b)];
const OBLIQUE = {
  ImagePositionPatient: ['-31.25', '-98.4', '77.0'],
  ImageOrientationPatient: [...rowDir, ...colDir].map((v) => v.toFixed(10)),
  PixelSpacing: ['0.6', '0.9'],
};
const GEOMETRIES = { sagittal: SAGITTAL, flipped: FLIPPED, oblique: OBLIQUE };

const close = (actual, expected, tol = 1e-6) =>
  actual.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) <= tol, `${actual} != ${expected}`));

test('the centre of the first pixel is ImagePositionPatient', () => {
  for (const g of Object.values(GEOMETRIES)) close(pixelToPatient(plane(g), [0.5, 0.5]), g.ImagePositionPatient.map(Number));
});

test('one column / one row step moves by the column / row spacing along IOP', () => {
  const p = plane(SAGITTAL);
  close(pixelToPatient(p, [1.5, 0.5]), [-12.5, -120 + 0.7, 140]);  // column step: PixelSpacing[1] along IOP[0..2]
  close(pixelToPatient(p, [0.5, 1.5]), [-12.5, -120, 140 - 0.8]);  // row step: PixelSpacing[0] along IOP[3..5]
  const f = plane(FLIPPED);
  close(pixelToPatient(f, [10.5, 20.5]), [3, 110 - 10 * 0.75, -95 + 20 * 0.75]);
});

test('integer boxes round-trip exactly through patient coordinates', () => {
  for (const [name, g] of Object.entries(GEOMETRIES)) {
    const p = plane(g);
    for (const box of [[0, 0, 1, 1], [101, 57, 163, 88], [200, 300, 256, 320], [-3, -2, 4, 5]]) {
      assert.deepEqual(cornersToBox(p, boxToCorners(p, box)), box, name);
    }
  }
});

test('corners lie in the plane and map back to the exact edges', () => {
  const p = plane(OBLIQUE);
  const corners = boxToCorners(p, [40, 60, 90, 75]);
  corners.forEach((c) => assert.ok(distanceFromPlane(p, c) < 1e-6));
  close(patientToPixel(p, corners[0]), [40, 60]);
  close(patientToPixel(p, corners[3]), [90, 75]);
  // top-left / top-right share a row; the rectangle's width is along the row direction
  close(patientToPixel(p, corners[1]), [90, 60]);
  close(patientToPixel(p, corners[2]), [40, 75]);
});

test('a rectangle dragged from its bottom-right corner or mirrored gives the same box', () => {
  for (const g of Object.values(GEOMETRIES)) {
    const p = plane(g);
    const [tl, tr, bl, br] = boxToCorners(p, [12, 30, 47, 52]);
    assert.deepEqual(cornersToBox(p, [br, bl, tr, tl]), [12, 30, 47, 52]);
  }
});

test('a moved rectangle rounds to the nearest pixel edge', () => {
  const p = plane(OBLIQUE);
  const shift = (pt, dx, dy) => pt.map((v, i) => v + dx * p.colSpacing * p.row[i] + dy * p.rowSpacing * p.col[i]);
  const moved = boxToCorners(p, [10, 10, 20, 30]).map((c) => shift(c, 3.4, -2.6));
  assert.deepEqual(cornersToBox(p, moved), [13, 7, 23, 27]);
});

test('slice order follows the slice normal whatever the file order', () => {
  const slices = [2, -1, 0, 3, 1].map((k) => plane({ ...OBLIQUE, ImagePositionPatient: pixelToPatient(plane(OBLIQUE), [0.5, 0.5]).map((v, i) => v + 4 * k * plane(OBLIQUE).normal[i]) }));
  assert.deepEqual(sliceOrder(slices), [1, 2, 4, 0, 3]);
  const flipped = [0, 1, 2].map((k) => plane({ ...FLIPPED, ImagePositionPatient: [3 + 5 * k, 110, -95] }));
  // FLIPPED's normal is (-1, 0, 0): increasing x goes backwards along it
  assert.deepEqual(sliceOrder(flipped), [2, 1, 0]);
});

test('bad geometry is refused with a precise message', () => {
  assert.throws(() => plane({ ...SAGITTAL, PixelSpacing: [0.8] }), /PixelSpacing must be 2 numbers/);
  assert.throws(() => plane({ ...SAGITTAL, ImageOrientationPatient: [1, 0, 0, 1, 0, 0] }), /not orthogonal/);
  assert.throws(() => plane({ ...SAGITTAL, ImagePositionPatient: undefined }), /ImagePositionPatient must be 3 numbers/);
});
